-- An OAuth connection flow is bound to the browser that opens it: the
-- digest of a random value held in that browser's flow cookie, who bound
-- it (the admin and their session), and the campaign the flow was issued
-- for (whose flows complete only for a signed-in admin of the connection's
-- org). The provider URL is held sealed: it carries the state.
ALTER TABLE connection_states ADD COLUMN browser_digest TEXT;
ALTER TABLE connection_states ADD COLUMN bound_by TEXT;
ALTER TABLE connection_states ADD COLUMN bound_session TEXT;
ALTER TABLE connection_states ADD COLUMN campaign_id TEXT;
