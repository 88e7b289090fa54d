-- The recipients of a send still to be claimed, in the order they are claimed: a claim
-- reads its batch from here instead of filtering every item of the send (the planner's
-- statistics lag behind a send that has just been materialized).
CREATE INDEX send_items_unclaimed ON send_items (send_id, subscription) WHERE owner IS NULL;
