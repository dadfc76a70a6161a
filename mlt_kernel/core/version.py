"""MLTrack's version (read by the build, shown by the kernel and the commands)."""

__version__ = "0.1.0"
