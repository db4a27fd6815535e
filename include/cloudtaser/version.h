/*
 * cloudtaser/version.h - compile-time and run-time version information.
 *
 * CT_ABI_VERSION drives the shared library's soname (libcloudtaser.so.N).
 * It changes only on a real ABI break; it stays 0 until the first release.
 */
#ifndef CLOUDTASER_VERSION_H
#define CLOUDTASER_VERSION_H

#include "common.h"

#define CT_ABI_VERSION 0

#define CT_VERSION_MAJOR 0
#define CT_VERSION_MINOR 1
#define CT_VERSION_PATCH 0
#define CT_VERSION_STRING "0.1.0"

/* Packs a version for numeric comparison: CT_VERSION_NUM(0,1,0) == 0x000100. */
#define CT_VERSION_NUM(maj, min, pat) (((maj) << 16) | ((min) << 8) | (pat))
#define CT_VERSION CT_VERSION_NUM(CT_VERSION_MAJOR, CT_VERSION_MINOR, CT_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The version of the library actually loaded, as "MAJOR.MINOR.PATCH".
 * Returns a static string, never NULL. Thread-safe.
 */
CT_API const char *ct_version(void);

/* The CT_VERSION number of the loaded library. Thread-safe. */
CT_API uint32_t ct_version_num(void);

/* The CT_ABI_VERSION the loaded library was built with. Thread-safe. */
CT_API int ct_abi_version(void);

#ifdef __cplusplus
}
#endif
#endif
