/*
 * test_health.c - cmocka tests for the pure parts of router/health.c: the
 * classification of one check, the rotation hysteresis (health_step) over
 * sequences of observations, and the primary LSN ring with the lag
 * computation. No servers: observations are built by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "router/health.h"

static const struct health_limits LIM = {.max_lag_bytes = 1000, .max_lag_ms = 2000};

/* A reachable replica in recovery with known lag. */
static struct health_obs good(int64_t bytes, int64_t ms)
{
	struct health_obs o = {.reachable = true,
			       .query_ok = true,
			       .in_recovery = true,
			       .lag_known = true,
			       .lag_bytes = bytes,
			       .lag_ms = ms};
	return o;
}

static struct health_obs unreachable(void)
{
	struct health_obs o = {.reachable = false};
	return o;
}

static void test_health_classify_replica_reasons(void **state)
{
	(void)state;
	struct health_obs o = unreachable();
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_UNREACHABLE);
	o = good(0, 0);
	o.query_ok = false;
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_QUERY_FAILED);
	o = good(0, 0);
	o.in_recovery = false;
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_PROMOTED);
	o = good(1001, 0);
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_LAG_BYTES);
	o = good(1000, 2000); /* at the limit is within it */
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_OK);
	o = good(0, 2001);
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_LAG_MS);
	o = good(5000, 5000);
	o.lag_known = false; /* unknown lag is no problem */
	assert_int_equal(health_classify(&o, ROLE_REPLICA, &LIM), HEALTH_OK);
}

static void test_health_classify_primary_reasons(void **state)
{
	(void)state;
	struct health_obs o = {.reachable = true, .query_ok = true, .in_recovery = false};
	assert_int_equal(health_classify(&o, ROLE_PRIMARY, &LIM), HEALTH_OK);
	o.in_recovery = true;
	assert_int_equal(health_classify(&o, ROLE_PRIMARY, &LIM), HEALTH_IN_RECOVERY);
	o = unreachable();
	assert_int_equal(health_classify(&o, ROLE_PRIMARY, &LIM), HEALTH_UNREACHABLE);
	/* lag never applies to a primary */
	o = (struct health_obs){.reachable = true,
				.query_ok = true,
				.lag_known = true,
				.lag_bytes = 1 << 30,
				.lag_ms = 1 << 30};
	assert_int_equal(health_classify(&o, ROLE_PRIMARY, &LIM), HEALTH_OK);
}

static void test_health_reason_healthy_split(void **state)
{
	(void)state;
	assert_true(health_reason_is_healthy(HEALTH_OK));
	assert_true(health_reason_is_healthy(HEALTH_LAG_BYTES));
	assert_true(health_reason_is_healthy(HEALTH_LAG_MS));
	assert_false(health_reason_is_healthy(HEALTH_UNREACHABLE));
	assert_false(health_reason_is_healthy(HEALTH_QUERY_FAILED));
	assert_false(health_reason_is_healthy(HEALTH_PROMOTED));
	assert_false(health_reason_is_healthy(HEALTH_IN_RECOVERY));
	assert_string_equal(health_reason_name(HEALTH_LAG_BYTES), "lag_bytes");
	assert_string_equal(health_reason_name(HEALTH_PROMOTED), "promoted");
}

/* Every problem takes an in-rotation replica out at the first check. */
static void test_health_step_leaves_at_once_on_each_problem(void **state)
{
	(void)state;
	struct health_obs probs[5];
	probs[0] = unreachable();
	probs[1] = good(0, 0);
	probs[1].query_ok = false;
	probs[2] = good(0, 0);
	probs[2].in_recovery = false;
	probs[3] = good(1001, 0);
	probs[4] = good(0, 2001);
	const enum health_reason want[5] = {HEALTH_UNREACHABLE, HEALTH_QUERY_FAILED,
					    HEALTH_PROMOTED, HEALTH_LAG_BYTES, HEALTH_LAG_MS};
	for (int i = 0; i < 5; i++) {
		struct health_state st;
		health_state_init(&st, true);
		struct health_obs ok = good(10, 10);
		assert_true(health_step(&st, &ok, &LIM));
		assert_false(health_step(&st, &probs[i], &LIM));
		assert_false(st.in_rotation);
		assert_int_equal(st.reason, want[i]);
	}
}

/* Lag between half and the full limit keeps an in-rotation replica in. */
static void test_health_step_stays_between_half_and_limit(void **state)
{
	(void)state;
	struct health_state st;
	health_state_init(&st, true);
	for (int i = 0; i < 10; i++) {
		struct health_obs o = good(900, 1900);
		assert_true(health_step(&st, &o, &LIM));
	}
}

/* Out: returns only after two consecutive checks under half of both. */
static void test_health_step_returns_after_two_good_checks(void **state)
{
	(void)state;
	struct health_state st;
	health_state_init(&st, true);
	struct health_obs bad = good(5000, 0);
	assert_false(health_step(&st, &bad, &LIM));
	struct health_obs fine = good(500, 1000); /* exactly half: fit */
	assert_false(health_step(&st, &fine, &LIM));
	assert_int_equal(st.good_streak, 1);
	assert_true(health_step(&st, &fine, &LIM));
	assert_int_equal(st.reason, HEALTH_OK);
}

/* Under the limit but over half does not count towards returning. */
static void test_health_step_no_return_above_half(void **state)
{
	(void)state;
	struct health_state st;
	health_state_init(&st, false);
	struct health_obs bytes = good(501, 0), ms = good(0, 1001);
	for (int i = 0; i < 6; i++) {
		assert_false(health_step(&st, i % 2 ? &bytes : &ms, &LIM));
		assert_int_equal(st.good_streak, 0);
		assert_int_equal(st.reason, HEALTH_OK); /* healthy, just not fit */
	}
}

/* good, blip, good, good: the blip restarts the count. */
static void test_health_step_streak_resets_on_any_blip(void **state)
{
	(void)state;
	struct health_obs fine = good(0, 0), over_half = good(600, 0), down = unreachable(),
			  unknown = good(0, 0);
	unknown.lag_known = false;
	const struct health_obs *blips[] = {&over_half, &down, &unknown};
	for (size_t b = 0; b < 3; b++) {
		struct health_state st;
		health_state_init(&st, false);
		assert_false(health_step(&st, &fine, &LIM));
		assert_false(health_step(&st, blips[b], &LIM));
		assert_int_equal(st.good_streak, 0);
		assert_false(health_step(&st, &fine, &LIM));
		assert_true(health_step(&st, &fine, &LIM));
	}
}

/* Exhaustive: every sequence of 6 checks over 4 kinds of observation,
 * against an independent model of the rule. */
static void test_health_step_exhaustive_sequences(void **state)
{
	(void)state;
	struct health_obs kinds[4];
	kinds[0] = good(0, 0);	   /* fit */
	kinds[1] = good(800, 100); /* in limits, over half */
	kinds[2] = good(0, 3000);  /* over a limit */
	kinds[3] = unreachable();
	int combos = 1;
	for (int i = 0; i < 6; i++)
		combos *= 4;
	for (int start = 0; start < 2; start++)
		for (int c = 0; c < combos; c++) {
			struct health_state st;
			health_state_init(&st, start == 1);
			bool model = start == 1;
			int streak = 0, flips = 0, x = c;
			for (int i = 0; i < 6; i++, x /= 4) {
				int k = x % 4;
				if (k >= 2) {
					model = false;
					streak = 0;
				} else if (!model) {
					streak = k == 0 ? streak + 1 : 0;
					if (streak == 2) {
						model = true;
						streak = 0;
					}
				}
				bool was = st.in_rotation;
				bool got = health_step(&st, &kinds[k], &LIM);
				assert_int_equal(got, model);
				assert_int_equal(st.in_rotation, model);
				flips += was != got;
			}
			/* no flapping: at most one return per two checks */
			assert_true(flips <= 4);
		}
}

static void test_health_ring_empty_is_unknown(void **state)
{
	(void)state;
	struct health_ring r;
	health_ring_init(&r);
	int64_t b = -7, ms = -7;
	assert_false(health_ring_lag(&r, 100, 0, &b, &ms));
	assert_int_equal(b, -7);
	assert_int_equal(ms, -7);
}

/* An idle primary: the replica has its LSN, so lag is 0 however old it is. */
static void test_health_ring_idle_primary_no_false_lag(void **state)
{
	(void)state;
	struct health_ring r;
	health_ring_init(&r);
	health_ring_add(&r, 1000, 5000);
	for (int64_t t = 2000; t < 100000; t += 1000)
		health_ring_add(&r, t, 5000); /* no change: no new sample */
	assert_int_equal(r.n, 1);
	int64_t b, ms;
	assert_true(health_ring_lag(&r, 1000000, 5000, &b, &ms));
	assert_int_equal(b, 0);
	assert_int_equal(ms, 0);
	assert_true(health_ring_lag(&r, 1000000, 6000, &b, &ms)); /* ahead: clamped */
	assert_int_equal(b, 0);
	assert_int_equal(ms, 0);
}

/* Lag time = now - first time the primary had an LSN past the replay LSN. */
static void test_health_ring_lag_from_first_sample_past_replay(void **state)
{
	(void)state;
	struct health_ring r;
	health_ring_init(&r);
	health_ring_add(&r, 1000, 100);
	health_ring_add(&r, 2000, 200);
	health_ring_add(&r, 3000, 300);
	health_ring_add(&r, 4000, 400);
	int64_t b, ms;
	assert_true(health_ring_lag(&r, 5000, 250, &b, &ms)); /* 300 first seen at 3000 */
	assert_int_equal(b, 150);
	assert_int_equal(ms, 2000);
	assert_true(health_ring_lag(&r, 5000, 200, &b, &ms)); /* equal is replayed */
	assert_int_equal(b, 200);
	assert_int_equal(ms, 2000);
	assert_true(health_ring_lag(&r, 5000, 50, &b, &ms)); /* before all: lower bound */
	assert_int_equal(b, 350);
	assert_int_equal(ms, 4000);
	assert_true(health_ring_lag(&r, 5000, 399, &b, &ms));
	assert_int_equal(b, 1);
	assert_int_equal(ms, 1000);
	/* the primary goes quiet; the stuck replica's lag keeps growing */
	assert_true(health_ring_lag(&r, 60000, 399, &b, &ms));
	assert_int_equal(ms, 56000);
}

static void test_health_ring_wraps_keeping_newest(void **state)
{
	(void)state;
	struct health_ring r;
	health_ring_init(&r);
	for (int i = 1; i <= HEALTH_RING_SIZE + 10; i++)
		health_ring_add(&r, (int64_t)i * 10, (int64_t)i * 100);
	assert_int_equal(r.n, HEALTH_RING_SIZE);
	int64_t b, ms;
	/* oldest kept is i = 11 (t 110, lsn 1100) */
	assert_true(health_ring_lag(&r, 10000, 0, &b, &ms));
	assert_int_equal(ms, 10000 - 110);
	assert_true(health_ring_lag(&r, 10000, 1150, &b, &ms)); /* next past: i = 12 */
	assert_int_equal(ms, 10000 - 120);
	int64_t top = (int64_t)(HEALTH_RING_SIZE + 10) * 100;
	assert_int_equal(b, top - 1150);
	/* every replay LSN finds the first sample past it */
	for (int i = 11; i < HEALTH_RING_SIZE + 10; i++) {
		assert_true(health_ring_lag(&r, 100000, (int64_t)i * 100 + 1, &b, &ms));
		assert_int_equal(ms, 100000 - (int64_t)(i + 1) * 10);
	}
}

/* An LSN that goes backwards is a different server: history restarts. */
static void test_health_ring_backwards_restarts(void **state)
{
	(void)state;
	struct health_ring r;
	health_ring_init(&r);
	health_ring_add(&r, 1000, 9000);
	health_ring_add(&r, 2000, 9500);
	health_ring_add(&r, 3000, 100);
	assert_int_equal(r.n, 1);
	int64_t b, ms;
	assert_true(health_ring_lag(&r, 4000, 50, &b, &ms));
	assert_int_equal(b, 50);
	assert_int_equal(ms, 1000);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health_classify_replica_reasons),
	    cmocka_unit_test(test_health_classify_primary_reasons),
	    cmocka_unit_test(test_health_reason_healthy_split),
	    cmocka_unit_test(test_health_step_leaves_at_once_on_each_problem),
	    cmocka_unit_test(test_health_step_stays_between_half_and_limit),
	    cmocka_unit_test(test_health_step_returns_after_two_good_checks),
	    cmocka_unit_test(test_health_step_no_return_above_half),
	    cmocka_unit_test(test_health_step_streak_resets_on_any_blip),
	    cmocka_unit_test(test_health_step_exhaustive_sequences),
	    cmocka_unit_test(test_health_ring_empty_is_unknown),
	    cmocka_unit_test(test_health_ring_idle_primary_no_false_lag),
	    cmocka_unit_test(test_health_ring_lag_from_first_sample_past_replay),
	    cmocka_unit_test(test_health_ring_wraps_keeping_newest),
	    cmocka_unit_test(test_health_ring_backwards_restarts),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
