"""Links to the target and the segments that cross them."""
