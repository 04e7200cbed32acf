"""Subscribers, enrollment, double opt-in, preferences, and the calendar maths of when lessons fall due."""
