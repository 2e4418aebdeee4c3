"""The package version, in a module of its own so that any layer can read it without importing the
package's public face (spill_guard/__init__.py imports the guard, which imports calibration ...)."""

__version__ = "0.1.0"
