"""The binary translator: decoder, translation units, translation cache."""
