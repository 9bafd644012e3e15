'use strict';
// driver_test.js - node-postgres (pg) against shardrouter, on the shop schema
// (orders/order_items sharded by order_id over 2 shards, blobs unsharded).
// Run by tests/integration/t_driver_node.sh, which starts the cluster and the
// router (default_pool_size = 2) and passes:
//   PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE   the router (pg reads them itself)
//   SR_OWNERS          "key:shard,..." for every test key, from `shardctl hash`
//   SR_BIG_KEY         a bigint key above 2^53 (among SR_OWNERS)
//   SR_PRIMARY_PORTS   "p0,p1" shard primaries, SR_REPLICA_PORTS "r0,r1" their
//                      replicas, SR_DIRECT_USER/SR_DIRECT_PASSWORD a superuser:
//                      used only to look behind the router (where rows landed,
//                      replication caught up)
// Prints TAP on stdout (ok/not ok lines, diagnostics as "# ", the plan last)
// and exits 1 when a check failed. Single-threaded like all node code.

const assert = require('node:assert');
const pg = require('pg');

const env = (name) => {
  const v = process.env[name];
  if (v === undefined || v === '') throw new Error(`environment variable ${name} is not set`);
  return v;
};

let tapN = 0;
let tapFailed = 0;
function diag(msg) {
  for (const line of String(msg).split('\n')) process.stdout.write(`# ${line}\n`);
}
function check(cond, name, detail) {
  tapN += 1;
  if (cond) {
    process.stdout.write(`ok ${tapN} - ${name}\n`);
  } else {
    tapFailed += 1;
    process.stdout.write(`not ok ${tapN} - ${name}\n`);
    if (detail !== undefined) {
      const text = typeof detail === 'string' ? detail : JSON.stringify(detail, null, 1);
      for (const line of text.split('\n')) process.stdout.write(`#   ${line}\n`);
    }
  }
  return cond;
}
function deepEq(a, b) {
  try {
    assert.deepStrictEqual(a, b);
    return true;
  } catch {
    return false;
  }
}
function errInfo(e) {
  if (!e) return 'no error';
  return `${e.code || '(no code)'} ${e.message}${e.detail ? ` DETAIL: ${e.detail}` : ''}`;
}
// settle(p): {ok, value} or {ok: false, err}
async function settle(p) {
  try {
    return { ok: true, value: await p };
  } catch (err) {
    return { ok: false, err };
  }
}
// expectError(p, code): the promise must reject with SQLSTATE code
async function expectError(p) {
  const r = await settle(p);
  return r.ok ? { code: null, err: null, rows: r.value.rows } : { code: r.err.code, err: r.err };
}

// --- configuration
const OWNER = new Map(); // key (string) -> shard
for (const item of env('SR_OWNERS').split(',')) {
  const [k, s] = item.split(':');
  OWNER.set(k, Number(s));
}
const BIG_KEY = env('SR_BIG_KEY');
const PRIMARY_PORTS = env('SR_PRIMARY_PORTS').split(',').map(Number);
const REPLICA_PORTS = env('SR_REPLICA_PORTS').split(',').map(Number);
const range = (a, b) => Array.from({ length: b - a + 1 }, (_, i) => String(a + i));
const KEYS1 = range(3000001, 3000200).concat([BIG_KEY]); // section 1
const KEYS3 = range(3100001, 3100050); // section 3
const SPARE = range(3200001, 3200040); // [0,10): cross-shard transactions, [10,30): section 4
const onShard = (keys, s) => keys.filter((k) => OWNER.get(k) === s);

const ROUTER_OPTS = {
  // a hung router fails a query instead of the whole script
  query_timeout: 20000,
  connectionTimeoutMillis: 10000,
};
const newClient = () => new pg.Client(ROUTER_OPTS);
const direct = (port) =>
  new pg.Client({
    host: '127.0.0.1',
    port,
    user: env('SR_DIRECT_USER'),
    password: env('SR_DIRECT_PASSWORD'),
    database: 'shop',
    query_timeout: 20000,
    connectionTimeoutMillis: 10000,
  });

let primaries = []; // direct clients, index = shard
let replicas = [];

// waitReplicas: every replica has replayed its primary's current WAL position
// (reads by key from clients that did not write go to replicas).
async function waitReplicas() {
  for (let s = 0; s < primaries.length; s++) {
    const lsn = (await primaries[s].query('SELECT pg_current_wal_lsn()::text AS l')).rows[0].l;
    const deadline = Date.now() + 60000;
    for (;;) {
      const r = await replicas[s].query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn]);
      if (r.rows[0].done) break;
      if (Date.now() > deadline) throw new Error(`replica of shard ${s} did not replay ${lsn} in 60 s`);
      await new Promise((res) => setTimeout(res, 100));
    }
  }
}

// whereStored(keys, table): [shard0 keys, shard1 keys] as stored on the primaries
async function whereStored(keys, table = 'orders') {
  const out = [];
  for (const p of primaries) {
    const r = await p.query(`SELECT order_id::text AS k FROM ${table} WHERE order_id = ANY($1::bigint[]) ORDER BY 1`, [
      keys,
    ]);
    out.push(r.rows.map((x) => x.k));
  }
  return out;
}
// placementProblems(keys, stored): keys missing, duplicated or not on their owner
function placementProblems(keys, stored) {
  const bad = [];
  for (const k of keys) {
    const on = stored.map((list, s) => (list.includes(k) ? s : -1)).filter((s) => s >= 0);
    if (on.length !== 1 || on[0] !== OWNER.get(k)) bad.push(`${k}: owner ${OWNER.get(k)}, stored on [${on}]`);
  }
  return bad;
}

const order = (k) => ({
  order_id: k,
  customer_id: String(BigInt(k) % 1000n + 7n),
  status: `st-${k}`,
  total: `${BigInt(k) % 997n}.${String(BigInt(k) % 100n).padStart(2, '0')}`,
});

// --- 1. parameterised queries (extended protocol, unnamed statements)
async function section1() {
  diag('1. parameterised INSERT and SELECT by key (extended protocol)');
  const c = newClient();
  await c.connect();
  const insErr = [];
  for (const k of KEYS1) {
    const o = order(k);
    const r = await settle(
      c.query('INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)', [
        o.order_id,
        o.customer_id,
        o.status,
        o.total,
      ]),
    );
    if (!r.ok) insErr.push(`${k}: ${errInfo(r.err)}`);
    else if (r.value.rowCount !== 1) insErr.push(`${k}: rowCount ${r.value.rowCount}`);
  }
  check(insErr.length === 0, `${KEYS1.length} parameterised INSERTs succeed (incl. key ${BIG_KEY} > 2^53)`, insErr.slice(0, 5).join('\n'));
  const bad = [];
  for (const k of KEYS1) {
    const r = await settle(c.query('SELECT order_id, customer_id, status, total FROM orders WHERE order_id = $1', [k]));
    if (!r.ok) bad.push(`${k}: ${errInfo(r.err)}`);
    else if (!deepEq(r.value.rows, [order(k)])) bad.push(`${k}: got ${JSON.stringify(r.value.rows)}`);
  }
  check(bad.length === 0, `each read back by key on the same client: bigint and numeric round-trip as exact strings`, bad.slice(0, 5).join('\n'));
  await c.end();
  const stored = await whereStored(KEYS1);
  diag(`shard 0 holds ${stored[0].length} of them, shard 1 holds ${stored[1].length}`);
  const probs = placementProblems(KEYS1, stored);
  check(probs.length === 0, 'every order is stored once, on the primary of the shard shardctl names', probs.slice(0, 5).join('\n'));
  check(stored[0].length > 0 && stored[1].length > 0, 'both shards got some of them');
}

// --- 2. named prepared statements from a 10-client pool, default_pool_size = 2
async function section2(pool) {
  diag('2. named prepared statements, pg.Pool max 10 over default_pool_size = 2, 500 concurrent');
  await waitReplicas();
  const stmts = [
    {
      name: 'get_order',
      text: 'SELECT order_id, customer_id, status, total FROM orders WHERE order_id = $1',
      want: (k) => [order(k)],
    },
    { name: 'get_total', text: 'SELECT total, status FROM orders WHERE order_id = $1', want: (k) => [{ total: order(k).total, status: order(k).status }] },
  ];
  const jobs = [];
  for (let i = 0; i < 500; i++) {
    const k = KEYS1[(i * 7) % KEYS1.length];
    const st = stmts[i % 2];
    jobs.push(settle(pool.query({ name: st.name, text: st.text, values: [k] })).then((r) => ({ r, k, st })));
  }
  const results = await Promise.all(jobs);
  const errs = results.filter((x) => !x.r.ok);
  const notExist = errs.filter((x) => x.r.err.code === '26000' || /does not exist/.test(x.r.err.message));
  const wrong = results.filter((x) => x.r.ok && !deepEq(x.r.value.rows, x.st.want(x.k)));
  check(pool.totalCount === 10, `the pool opened 10 client connections (got ${pool.totalCount})`);
  check(notExist.length === 0, 'no "prepared statement does not exist" error', notExist.slice(0, 5).map((x) => `${x.st.name}(${x.k}): ${errInfo(x.r.err)}`).join('\n'));
  check(errs.length === 0, `500 named-statement queries: no error (got ${errs.length})`, errs.slice(0, 5).map((x) => `${x.st.name}(${x.k}): ${errInfo(x.r.err)}`).join('\n'));
  check(wrong.length === 0, `500 named-statement queries: every result is the row of its key (${wrong.length} wrong)`, wrong.slice(0, 5).map((x) => `${x.st.name}(${x.k}): got ${JSON.stringify(x.r.value.rows)}`).join('\n'));
  // a named write statement, on clients that already hold the read statements
  const upd = await Promise.all(
    KEYS1.slice(0, 40).map((k) =>
      settle(pool.query({ name: 'touch_order', text: 'UPDATE orders SET status = $2 WHERE order_id = $1', values: [k, order(k).status] })),
    ),
  );
  const updBad = upd.filter((r) => !r.ok || r.value.rowCount !== 1);
  check(updBad.length === 0, '40 concurrent named UPDATEs each update exactly one row', updBad.slice(0, 5).map((r) => (r.ok ? `rowCount ${r.value.rowCount}` : errInfo(r.err))).join('\n'));
}

// --- 3. transactions
async function section3(pool) {
  diag('3. transactions on one pooled client');
  const c = await pool.connect();
  try {
    const errs = [];
    for (const k of KEYS3) {
      try {
        await c.query('BEGIN');
        const o = order(k);
        await c.query('INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)', [o.order_id, o.customer_id, 'tx', o.total]);
        for (let line = 1; line <= 3; line++) {
          await c.query('INSERT INTO order_items (order_id, line_no, sku, qty) VALUES ($1,$2,$3,$4)', [k, line, `sku-${k}-${line}`, line * 2]);
        }
        await c.query('COMMIT');
      } catch (e) {
        errs.push(`${k}: ${errInfo(e)}`);
        await settle(c.query('ROLLBACK'));
      }
    }
    check(errs.length === 0, `${KEYS3.length} transactions BEGIN / INSERT order + 3 items / COMMIT succeed`, errs.slice(0, 5).join('\n'));
    const so = await whereStored(KEYS3, 'orders');
    const si = await whereStored(KEYS3, 'order_items');
    const probs = placementProblems(KEYS3, so);
    check(probs.length === 0, 'each transaction\'s order is on its owner\'s primary', probs.slice(0, 5).join('\n'));
    const items = [];
    for (const [s, p] of primaries.entries()) {
      const r = await p.query(
        `SELECT i.order_id::text AS k, count(*)::int AS n, bool_and(o.order_id IS NOT NULL) AS with_order
           FROM order_items i LEFT JOIN orders o USING (order_id)
          WHERE i.order_id = ANY($1::bigint[]) GROUP BY 1`,
        [KEYS3],
      );
      for (const row of r.rows) items.push({ s, ...row });
    }
    const itemBad = items.filter((x) => x.n !== 3 || !x.with_order);
    check(
      items.length === KEYS3.length && itemBad.length === 0,
      'each order has its 3 items, committed on the same shard as the order',
      `orders with items: ${items.length}; ${JSON.stringify(itemBad.slice(0, 5))} (${si[0].length}+${si[1].length} item rows)`,
    );

    // a transaction touching two shards
    const x0 = onShard(SPARE.slice(0, 10), 0)[0];
    const x1 = onShard(SPARE.slice(0, 10), 1)[0];
    diag(`two-shard transaction: keys ${x0} (shard 0) and ${x1} (shard 1)`);
    const ins = 'INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)';
    const b = await settle(c.query('BEGIN'));
    const i0 = await settle(c.query(ins, [x0, 1, 'x-shard', '1']));
    const i1 = await expectError(c.query(ins, [x1, 1, 'x-shard', '1']));
    check(b.ok && i0.ok, 'BEGIN and the first INSERT (shard 0) succeed', `${b.ok ? '' : errInfo(b.err)} ${i0.ok ? '' : errInfo(i0.err)}`);
    check(i1.code === '0A000', 'the INSERT on the second shard rejects with SQLSTATE 0A000', `got: ${i1.err ? errInfo(i1.err) : 'success ' + JSON.stringify(i1.rows)}`);
    const rb = await settle(c.query('ROLLBACK'));
    check(rb.ok, 'ROLLBACK afterwards succeeds', rb.ok ? '' : errInfo(rb.err));
    const again = await settle(c.query('SELECT order_id, status FROM orders WHERE order_id = $1', [KEYS3[0]]));
    check(again.ok && deepEq(again.value.rows, [{ order_id: KEYS3[0], status: 'tx' }]), 'the client is reusable: a SELECT by key returns its row', again.ok ? JSON.stringify(again.value.rows) : errInfo(again.err));
    const seen = await settle(c.query('SELECT order_id FROM orders WHERE order_id = $1', [x0]));
    const seen1 = await settle(c.query('SELECT order_id FROM orders WHERE order_id = $1', [x1]));
    const st = await whereStored([x0, x1]);
    check(
      st[0].length + st[1].length === 0,
      'nothing of the two-shard transaction on either primary',
      `stored: ${JSON.stringify(st)}`,
    );
    check(
      seen.ok && seen.value.rows.length === 0 && seen1.ok && seen1.value.rows.length === 0,
      'nothing of it visible through the router either',
      `${seen.ok ? JSON.stringify(seen.value.rows) : errInfo(seen.err)} / ${seen1.ok ? JSON.stringify(seen1.value.rows) : errInfo(seen1.err)}`,
    );

    // the other way round, simple protocol, read then write
    const y0 = onShard(SPARE.slice(0, 10), 0)[1];
    const y1 = onShard(SPARE.slice(0, 10), 1)[1];
    await settle(c.query('BEGIN'));
    const r1 = await settle(c.query(`SELECT count(*)::int AS n FROM orders WHERE order_id = ${y1}`));
    const w0 = await expectError(c.query(`INSERT INTO orders (order_id, customer_id, status, total) VALUES (${y0}, 1, 'x-shard-2', 1)`));
    await settle(c.query('ROLLBACK'));
    check(r1.ok && w0.code === '0A000', `simple protocol: BEGIN; SELECT on shard 1; INSERT on shard 0 rejects with 0A000`, `${r1.ok ? 'select ok' : errInfo(r1.err)}; insert: ${w0.err ? errInfo(w0.err) : 'success'}`);
    const st2 = await whereStored([y0]);
    check(st2[0].length + st2[1].length === 0, '... and that INSERT is nowhere', JSON.stringify(st2));
    const ok2 = await settle(c.query('SELECT 1 AS one'));
    check(ok2.ok && ok2.value.rows[0].one === 1, '... and the client goes on', ok2.ok ? '' : errInfo(ok2.err));
  } finally {
    c.release();
  }
}

// --- 4. queued queries on one client, keys on both shards
async function section4(pool) {
  diag('4. 100 queued queries on one client (not awaited one by one)');
  const c = await pool.connect();
  try {
    const old0 = onShard(KEYS1, 0);
    const old1 = onShard(KEYS1, 1);
    const fresh = SPARE.slice(10, 30); // 20 new keys, both shards
    const jobs = [];
    for (let j = 0; j < 20; j++) {
      const k = fresh[j];
      const o = order(k);
      jobs.push({ want: { rowCount: 1 }, p: c.query('INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)', [k, o.customer_id, o.status, o.total]) });
      jobs.push({ want: [order(k)], p: c.query('SELECT order_id, customer_id, status, total FROM orders WHERE order_id = $1', [k]) });
      for (const oldk of [old0[j % old0.length], old1[j % old1.length], KEYS1[(j * 13) % KEYS1.length]]) {
        jobs.push({ want: [order(oldk)], p: c.query('SELECT order_id, customer_id, status, total FROM orders WHERE order_id = $1', [oldk]) });
      }
    }
    const fresh0 = onShard(fresh, 0).length;
    check(jobs.length === 100 && fresh0 > 0 && fresh0 < 20, `100 queries queued (20 INSERT, 80 SELECT; new keys: ${fresh0} on shard 0, ${20 - fresh0} on shard 1)`);
    const rs = await Promise.all(jobs.map((j) => settle(j.p)));
    const bad = [];
    rs.forEach((r, i) => {
      const w = jobs[i].want;
      if (!r.ok) bad.push(`#${i}: ${errInfo(r.err)}`);
      else if (Array.isArray(w) ? !deepEq(r.value.rows, w) : r.value.rowCount !== w.rowCount) bad.push(`#${i}: got ${JSON.stringify(r.value.rows)} rowCount ${r.value.rowCount}`);
    });
    check(bad.length === 0, 'all 100 results are right (each new key read back right after its INSERT)', bad.slice(0, 5).join('\n'));
    const probs = placementProblems(fresh, await whereStored(fresh));
    check(probs.length === 0, 'the 20 queued INSERTs are on their owners\' primaries', probs.slice(0, 5).join('\n'));
  } finally {
    c.release();
  }
}

// --- 5. errors
async function section5(pool) {
  diag('5. errors');
  const c = await pool.connect();
  try {
    const e1 = await expectError(c.query('SELEC 1'));
    check(e1.code === '42601', 'simple query "SELEC 1": SQLSTATE 42601', e1.err ? errInfo(e1.err) : 'no error');
    let r = await settle(c.query('SELECT 1 AS one'));
    check(r.ok && r.value.rows[0].one === 1, '... and the client stays usable', r.ok ? '' : errInfo(r.err));
    const e2 = await expectError(c.query('SELECT order_id FROM orders WHERE order_id = $1 AND', [KEYS1[0]]));
    check(e2.code === '42601', 'parameterised "SELECT order_id FROM orders WHERE order_id = $1 AND": SQLSTATE 42601', e2.err ? errInfo(e2.err) : 'no error');
    const bad = `SELECT order_id FROM orders WHERE order_id = ${KEYS1[0]} AND`;
    const e2s = await expectError(c.query(bad));
    check(e2s.code === '42601', `simple query "${bad}": SQLSTATE 42601`, e2s.err ? errInfo(e2s.err) : 'no error');
    r = await settle(c.query('SELECT order_id FROM orders WHERE order_id = $1', [KEYS1[1]]));
    check(r.ok && deepEq(r.value.rows, [{ order_id: KEYS1[1] }]), '... and a keyed query works afterwards', r.ok ? JSON.stringify(r.value.rows) : errInfo(r.err));
    for (const s of [0, 1]) {
      const k = onShard(KEYS1, s)[2];
      const e = await expectError(c.query('INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)', [k, 1, 'dup', '1']));
      check(
        e.code === '23505' && e.err.constraint === 'orders_pkey',
        `duplicate key ${k} (shard ${s}): SQLSTATE 23505 on orders_pkey (so it reached the owner)`,
        e.err ? `${errInfo(e.err)} constraint=${e.err.constraint}` : 'no error',
      );
    }
    await settle(c.query('BEGIN'));
    const k = onShard(KEYS1, 1)[3];
    const e3 = await expectError(c.query('INSERT INTO orders (order_id, customer_id, status, total) VALUES ($1,$2,$3,$4)', [k, 1, 'dup', '1']));
    const e4 = await expectError(c.query('SELECT order_id FROM orders WHERE order_id = $1', [k]));
    const rb = await settle(c.query('ROLLBACK'));
    check(e3.code === '23505' && e4.code === '25P02' && rb.ok, 'in a transaction: 23505, then 25P02 (aborted), then ROLLBACK succeeds', `${errInfo(e3.err)} / ${e4.err ? errInfo(e4.err) : 'no error'} / ${rb.ok ? 'rollback ok' : errInfo(rb.err)}`);
    r = await settle(c.query('SELECT status FROM orders WHERE order_id = $1', [k]));
    check(r.ok && deepEq(r.value.rows, [{ status: order(k).status }]), '... the row is unchanged and the client is usable', r.ok ? JSON.stringify(r.value.rows) : errInfo(r.err));
  } finally {
    c.release();
  }
}

// --- 6. session settings survive transaction pooling and do not leak
async function section6(pool) {
  diag('6. SET TIME ZONE on one client while other pool clients run queries');
  const other = await pool.query('SHOW TimeZone');
  const defTz = other.rows[0].TimeZone;
  const tz = defTz === 'UTC' ? 'Pacific/Chatham' : 'UTC';
  diag(`server default TimeZone is ${defTz}; setting ${tz}`);
  const c = await pool.connect();
  const bad = [];
  const leaks = [];
  try {
    await c.query(`SET TIME ZONE '${tz}'`);
    const k0 = onShard(KEYS1, 0);
    const k1 = onShard(KEYS1, 1);
    const mine = (async () => {
      for (let i = 0; i < 12; i++) {
        const s = await settle(c.query('SHOW TimeZone'));
        if (!s.ok) bad.push(`SHOW: ${errInfo(s.err)}`);
        else if (s.value.rows[0].TimeZone !== tz) bad.push(`SHOW #${i}: ${s.value.rows[0].TimeZone}`);
        const k = (i % 2 ? k1 : k0)[i];
        const q = await settle(c.query("SELECT current_setting('TimeZone') AS tz, order_id FROM orders WHERE order_id = $1", [k]));
        if (!q.ok) bad.push(`keyed ${k}: ${errInfo(q.err)}`);
        else if (!deepEq(q.value.rows, [{ tz, order_id: k }])) bad.push(`keyed ${k} (shard ${OWNER.get(k)}): ${JSON.stringify(q.value.rows)}`);
      }
    })();
    const others = [];
    for (let i = 0; i < 120; i++) {
      const k = KEYS1[(i * 11) % KEYS1.length];
      others.push(
        settle(pool.query("SELECT current_setting('TimeZone') AS tz, order_id FROM orders WHERE order_id = $1", [k])).then((r) => {
          if (!r.ok) leaks.push(`${k}: ${errInfo(r.err)}`);
          else if (!deepEq(r.value.rows, [{ tz: defTz, order_id: k }])) leaks.push(`${k}: ${JSON.stringify(r.value.rows)}`);
        }),
      );
    }
    await Promise.all([mine, ...others]);
  } finally {
    c.release(true); // its session has a non-default TimeZone: do not return it to the pool
  }
  check(bad.length === 0, `SHOW TimeZone and keyed queries on both shards see ${tz} on the SET client (24 queries)`, bad.slice(0, 5).join('\n'));
  check(leaks.length === 0, `120 concurrent queries on the other pool clients see the default ${defTz}`, leaks.slice(0, 5).join('\n'));
}

// --- 7. uuid, bytea, jsonb; binary parameters
async function section7(pool) {
  diag('7. uuid/bytea/jsonb round trips, binary-format parameters');
  const c = await pool.connect();
  try {
    const uuid = '0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0';
    const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i)); // pg sends a Buffer as a binary parameter
    const doc = { a: 1, b: [true, null, 'x\u00e9\u4e2d'], c: { d: '12345678901234567890' } };
    const ins = await settle(c.query('INSERT INTO blobs (id, u, b, j) VALUES ($1,$2,$3,$4)', ['1', uuid, bytes, JSON.stringify(doc)]));
    check(ins.ok, 'INSERT into the unsharded blobs table with a binary bytea parameter', ins.ok ? '' : errInfo(ins.err));
    const r = await settle(c.query('SELECT id, u, b, j FROM blobs WHERE id = $1', ['1']));
    const row = r.ok ? r.value.rows[0] : undefined;
    check(
      row !== undefined && row.id === '1' && row.u === uuid && Buffer.isBuffer(row.b) && row.b.equals(bytes) && deepEq(row.j, doc),
      'uuid, bytea (256 bytes 0..255) and jsonb read back unchanged',
      r.ok ? JSON.stringify(r.value.rows) : errInfo(r.err),
    );
    const on = [];
    for (const p of primaries) on.push((await p.query('SELECT count(*)::int AS n FROM blobs WHERE id = 1')).rows[0].n);
    check(deepEq(on, [1, 0]), 'the blobs row is on the home shard (0) only', JSON.stringify(on));

    for (const s of [0, 1]) {
      const k = onShard(KEYS1, s)[4];
      const q = await settle(
        c.query('SELECT order_id, $2::uuid AS u, $3::bytea AS b, $4::jsonb AS j FROM orders WHERE order_id = $1', [k, uuid, bytes, JSON.stringify(doc)]),
      );
      const x = q.ok ? q.value.rows : [];
      check(
        x.length === 1 && x[0].order_id === k && x[0].u === uuid && x[0].b.equals(bytes) && deepEq(x[0].j, doc),
        `keyed query on shard ${s} (key ${k}) echoes uuid/bytea/jsonb parameters unchanged`,
        q.ok ? JSON.stringify(x) : errInfo(q.err),
      );
    }
    // the key itself as a binary int8 parameter (8 bytes, big-endian)
    for (const k of [onShard(KEYS1, 0)[5], onShard(KEYS1, 1)[5], BIG_KEY]) {
      const buf = Buffer.alloc(8);
      buf.writeBigInt64BE(BigInt(k));
      const q = await settle(c.query('SELECT order_id, status FROM orders WHERE order_id = $1', [buf]));
      check(
        q.ok && deepEq(q.value.rows, [{ order_id: k, status: order(k).status }]),
        `key ${k} (shard ${OWNER.get(k)}) as a binary int8 parameter finds its row`,
        q.ok ? JSON.stringify(q.value.rows) : errInfo(q.err),
      );
    }
    // results in binary format (Bind asks for binary result columns). pg decodes
    // every DataRow field as UTF-8 before its type parser runs, so only values
    // whose binary form is ASCII survive on the client side: int4 0x01020304,
    // bool, text, and an int8 difference of 0.
    for (const s of [0, 1]) {
      const k = onShard(KEYS1, s)[6];
      const q = await settle(
        c.query({
          text: 'SELECT (order_id - $1)::bigint AS diff, $2::int AS n, order_id = $1 AS hit, status FROM orders WHERE order_id = $1',
          values: [k, 16909060],
          binary: true,
        }),
      );
      const fmts = q.ok ? q.value.fields.map((f) => f.format) : [];
      check(
        q.ok && deepEq(fmts, ['binary', 'binary', 'binary', 'binary']) && deepEq(q.value.rows, [{ diff: '0', n: 16909060, hit: true, status: order(k).status }]),
        `binary-format results (key ${k}, shard ${s}): every column binary, int8/int4/bool/text decode right`,
        q.ok ? `formats ${JSON.stringify(fmts)} rows ${JSON.stringify(q.value.rows)}` : errInfo(q.err),
      );
    }
  } finally {
    c.release();
  }
}

async function main() {
  const watchdog = setTimeout(() => {
    check(false, 'driver_test.js finished within 100 s');
    process.stdout.write(`1..${tapN}\n`);
    process.exit(1);
  }, 100000);
  primaries = PRIMARY_PORTS.map(direct);
  replicas = REPLICA_PORTS.map(direct);
  for (const d of [...primaries, ...replicas]) await d.connect();
  const pool = new pg.Pool({ ...ROUTER_OPTS, max: 10, idleTimeoutMillis: 0 });
  pool.on('error', (e) => diag(`pool client error: ${errInfo(e)}`));
  const sections = [section1, section2, section3, section4, section5, section6, section7];
  for (const [i, sec] of sections.entries()) {
    try {
      await sec(pool);
    } catch (e) {
      check(false, `section ${i + 1} ran to its end`, `threw: ${errInfo(e)}\n${e && e.stack}`);
    }
  }
  await settle(pool.end());
  for (const d of [...primaries, ...replicas]) await settle(d.end());
  clearTimeout(watchdog);
  process.stdout.write(`1..${tapN}\n`);
  process.stdout.write(`# ${tapN - tapFailed} passed, ${tapFailed} failed\n`);
  process.exitCode = tapFailed === 0 && tapN > 0 ? 0 : 1;
}

main().catch((e) => {
  check(false, 'driver_test.js setup', errInfo(e) + '\n' + (e && e.stack));
  process.stdout.write(`1..${tapN}\n`);
  process.exit(1);
});
