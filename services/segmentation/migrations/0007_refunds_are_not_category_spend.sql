-- A refund in the tenant's category is no longer spend that makes a customer a non-customer. The customers whose
-- features may have counted one are due today, so the due sweep computes their features again.
UPDATE features f SET due_date = (now() AT TIME ZONE 'UTC')::date
WHERE (f.due_date IS NULL OR f.due_date > (now() AT TIME ZONE 'UTC')::date)
  AND EXISTS (SELECT 1 FROM transactions t
              WHERE t.tenant_id = f.tenant_id AND t.customer_id = f.customer_id AND t.amount_minor <= 0);
