"""Encodings of the metric model. None of these modules knows any device."""
