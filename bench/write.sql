-- write.sql - pgbench script (bench/run.sh): an UPDATE of a random existing order and an
-- INSERT of a new one, both by key, each in its own implicit transaction (2 queries).
\set id random(1, 100000)
\set nid random(100001, 2000000000)
UPDATE orders SET status = 'paid', total = total + 1 WHERE order_id = :id;
INSERT INTO orders (order_id, customer_id, status, total) VALUES (:nid, :id, 'new', 9.99) ON CONFLICT (order_id) DO NOTHING;
