"""Reading, preprocessing and synthesising radiographs."""
