"""`course bench`: the whole sending pipeline measured on real parts."""
