-- Issue #21: labels on conversations ("refund", "vip"), as a JSON array of strings; NULL: none.
ALTER TABLE conversations ADD COLUMN labels TEXT;
