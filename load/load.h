/*
 * load.h - `c10k load`, the open-loop HTTP/1.1 load generator (load.c says
 * what it is and how it measures).
 */
#ifndef C10K_LOAD_H
#define C10K_LOAD_H

/* Run `c10k load` with argv[0] == "load". Returns the exit status: 0 for a
 * valid run, 1 for a run the generator could not keep to its schedule (or
 * could not run at all), 2 for a usage error (after printing why). */
int c10k_load_main(int argc, char **argv);

#endif
