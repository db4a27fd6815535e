/*
 * cloudtaser/cloudtaser.h - umbrella header for libcloudtaser.
 * See common.h for the error model and the thread-safety rules.
 */
#ifndef CLOUDTASER_H
#define CLOUDTASER_H

#include "common.h"
#include "version.h"
#include "context.h"
#include "secret.h"
#include "transport.h"
#include "tls.h"
#include "store.h"
#include "pki.h"
#include "room.h"
#include "relay.h"
#include "register.h"
#include "jwt.h"
#include "session.h"
#include "vault.h"
#include "bootstrap.h"
#include "agent.h"
#include "router.h"
#include "k8s.h"
#include "broker.h"
#include "review.h"
#include "migrate.h"
#include "podpolicy.h"
#include "ops.h"

#endif
