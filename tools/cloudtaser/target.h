/* target.h - cloudtaser target ... (target.c). */
#ifndef CT_TOOLS_CLOUDTASER_TARGET_H
#define CT_TOOLS_CLOUDTASER_TARGET_H

#include "cloudtaser/cloudtaser.h"

/* Runs "cloudtaser target COMMAND ..." (argv[1] is "target"); returns the exit status. */
int target_main(int argc, char **argv);

#endif
