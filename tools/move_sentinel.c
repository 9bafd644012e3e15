/*
 * move_sentinel.c - keeps a range from staying frozen when `shardctl move`
 * dies (kill -9, OOM killer) between freeze and cutover.
 *
 * Before it freezes a range, the move forks a sentinel: a child that only
 * waits on a pipe. The move writes one byte to stand it down once the range
 * is no longer frozen by it (after cutover, after its own rollback, at
 * exit). If the pipe reaches EOF without that byte, the move died: the
 * sentinel connects to the catalog and, in one catalog change (under the
 * catalog's advisory lock, so after any cutover the dying move had in
 * flight), sets the range back to active if it is still frozen and still
 * owned by the source. The move's journal stays `running`, so a rerun
 * resumes (freezing again) or --abort rolls back; nothing is lost because
 * the slot keeps every change made meanwhile. The sentinel closes the
 * parent's sockets at once (without a libpq goodbye), so a dead move's
 * connections and its session lock go away with it. A machine crash kills
 * the sentinel too: then the range stays frozen until a rerun or --abort.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ctl.h"
#include "move.h"
#include "shardmap/catalog.h"

static pid_t sentinel_pid = -1;
static int sentinel_fd = -1;

struct unfreeze {
	uint64_t lo, hi;
	int32_t from;
	bool changed;
};

static int unfreeze_fn(struct sm_map *m, void *ctx, struct sr_errmsg *em)
{
	struct unfreeze *u = ctx;
	struct sm_range *r = sm_map_find_range(m, u->lo);
	if (!r || r->hi != u->hi || r->shard_id != u->from || r->state != SM_RANGE_FROZEN)
		return 0; /* cut over, split, or already active: nothing to undo */
	u->changed = true;
	return sm_map_set_state(m, u->lo, SM_RANGE_ACTIVE, em);
}

static void sentinel_main(int rfd, const char *catalog, struct unfreeze *u)
	__attribute__((noreturn));
static void sentinel_main(int rfd, const char *catalog, struct unfreeze *u)
{
	char c;
	ssize_t n;
	do
		n = read(rfd, &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0); /* stood down */
	for (int attempt = 0; attempt < 30; attempt++) {
		struct sr_errmsg em = {{0}};
		PGconn *cat = ctl_connect(catalog, 5, &em);
		uint64_t epoch = 0;
		int rc = cat ? sm_catalog_apply(cat, unfreeze_fn, u, &epoch, &em) : SR_EDB;
		PQfinish(cat);
		if (rc == 0) {
			if (u->changed)
				fprintf(stderr,
					"shardctl move (sentinel): the move died while range %016" PRIx64
					" was frozen; it is active again on shard %d (epoch %" PRIu64
					"); rerun the move to resume it, or add --abort\n",
					u->lo, u->from, epoch);
			_exit(0);
		}
		fprintf(stderr, "shardctl move (sentinel): could not unfreeze range %016" PRIx64
			": %s; retrying\n", u->lo, em.text);
		sleep(1);
	}
	_exit(1);
}

int move_sentinel_start(const char *catalog, uint64_t lo, uint64_t hi, int32_t from,
			const int *fds, size_t n_fds)
{
	if (sentinel_pid > 0)
		return 0;
	int p[2];
	if (pipe(p) != 0)
		return SR_EIO;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return SR_EIO;
	}
	if (pid == 0) {
		struct unfreeze u = {lo, hi, from, false};
		for (size_t i = 0; i < n_fds; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		close(p[1]);
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		sentinel_main(p[0], catalog, &u);
	}
	close(p[0]);
	sentinel_pid = pid;
	sentinel_fd = p[1];
	return 0;
}

void move_sentinel_release(void)
{
	if (sentinel_pid <= 0)
		return;
	ssize_t n;
	do
		n = write(sentinel_fd, "x", 1);
	while (n < 0 && errno == EINTR);
	close(sentinel_fd);
	while (waitpid(sentinel_pid, NULL, 0) < 0 && errno == EINTR)
		;
	sentinel_pid = -1;
	sentinel_fd = -1;
}

void move_sentinel_abandon(void)
{
	if (sentinel_pid <= 0)
		return;
	close(sentinel_fd); /* EOF without the byte: the sentinel checks and unfreezes */
	sentinel_pid = -1;
	sentinel_fd = -1;
}
