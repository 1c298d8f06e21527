-- Request logs say whether their token counts were counted by the gateway (the provider
-- reported none, or the client left before it could) rather than reported by the provider.
ALTER TABLE request_logs ADD COLUMN usage_estimated INTEGER NOT NULL DEFAULT 0;
