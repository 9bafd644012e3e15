/*
 * cancel.h - CancelRequest handling. Each client gets a BackendKeyData whose
 * pid encodes the worker (pid >> 24) and the client id (low 24 bits), so any
 * worker that receives a CancelRequest hands it to the owning worker
 * through that worker's small mutex-protected inbox (cancels are rare; the
 * query path takes no lock). The owner checks the secret and, if the client
 * has a server attached, sends a CancelRequest to that backend.
 */
#ifndef SR_ROUTER_CANCEL_H
#define SR_ROUTER_CANCEL_H

#include <stdint.h>

struct worker;

/* Any worker thread: route a CancelRequest(pid, secret). */
void cancel_request(struct worker *from, uint32_t pid, uint32_t secret);

/* Set up / tear down the inbox of worker w (worker_start/stop call these). */
int cancel_init(struct worker *w);
void cancel_destroy(struct worker *w);

/* Register the worker table so cancel_request can find owners. */
void cancel_set_workers(struct worker *workers, int n);

#endif
