"""The generated sample data set: synthetic photos and tickets for demos and tests."""
