"""The `course` command line."""
