"""The extender's pure core: node facts from Node objects, energy annotations, filtering and
scoring. No I/O, no clock (an import contract in pyproject.toml guards every module of this
package)."""
