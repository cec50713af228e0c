"""Generated gRPC/protobuf modules for KEDA's external scaler contract (`make proto`)."""
