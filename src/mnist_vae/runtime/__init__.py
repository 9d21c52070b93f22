"""Where the program runs: device and precision, threads and memory, processes, logging."""
