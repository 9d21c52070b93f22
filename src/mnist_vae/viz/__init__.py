"""Pictures: which images go into which PNG (figures), drawing them (plots, matplotlib) and tiling digits."""
