"""Article -> lessons: parsing, splitting, guide references, course definitions, import. Knows nothing of sending."""
