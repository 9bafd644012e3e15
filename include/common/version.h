/*
 * version.h - the one version string of shardrouter and shardctl.
 */
#ifndef SR_COMMON_VERSION_H
#define SR_COMMON_VERSION_H

#define SHARDROUTER_VERSION "0.1.0"

#endif
