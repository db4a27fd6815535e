/* secret.h - cloudtaser source secret ... (secret.c). */
#ifndef CT_TOOLS_CLOUDTASER_SECRET_H
#define CT_TOOLS_CLOUDTASER_SECRET_H

/* Runs "cloudtaser source secret COMMAND ..." (argv[2] is "secret"); returns the exit status. */
int secret_main(int argc, char **argv);

#endif
