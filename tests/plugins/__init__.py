"""What the tests plug into the product through its seams, kept out of the product itself."""
