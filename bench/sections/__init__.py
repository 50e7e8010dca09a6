"""One module per benchmark section; each exposes `run(sizes) -> SectionResult`."""
