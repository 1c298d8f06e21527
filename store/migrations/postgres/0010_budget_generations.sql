-- Usage rows remember how many budget resets their entity had when the row's spend was last
-- zeroed: spend charged under an earlier generation (a request admitted before the reset whose
-- usage reaches the store after it) no longer counts toward the fresh budget.
ALTER TABLE usage ADD COLUMN budget_generation BIGINT NOT NULL DEFAULT 0;
