"""The shapes world: seeded captioned scenes of flat shapes, their renders and their analyser."""
