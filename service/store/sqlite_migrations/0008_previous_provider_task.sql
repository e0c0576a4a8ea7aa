-- jobhook schema, version 8: APIMart's modal call may answer with a new provider task id (seed
-- 000's example does). The task then follows the new id; the one it followed before is kept
-- here, so a lookup by it still finds the task.

ALTER TABLE tasks ADD COLUMN previous_provider_task_id TEXT;
CREATE INDEX tasks_previous_provider_task_id ON tasks (previous_provider_task_id)
    WHERE previous_provider_task_id IS NOT NULL;
