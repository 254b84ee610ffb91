-- name: put
INSERT INTO registry_instances (service, instance_id, record, renewed_at, stale_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (service, instance_id) DO UPDATE
SET record = excluded.record, renewed_at = excluded.renewed_at, stale_at = excluded.stale_at;

-- name: sweep
-- Every service's: one whose instances all died has nobody left to sweep its own.
DELETE FROM registry_instances WHERE stale_at < ?;

-- name: remove
DELETE FROM registry_instances WHERE service = ? AND instance_id = ?;

-- name: records
SELECT record FROM registry_instances WHERE service = ? ORDER BY instance_id;

-- name: services
SELECT DISTINCT service FROM registry_instances ORDER BY service;
