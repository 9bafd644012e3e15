-- select.sql - pgbench script (bench/run.sh): one read of a random order by its key.
\set id random(1, 100000)
SELECT status, total FROM orders WHERE order_id = :id;
