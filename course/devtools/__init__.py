"""Tools for developers and operators, not the product's runtime: the local mail sink and the benchmark."""
