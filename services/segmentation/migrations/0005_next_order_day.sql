-- The first day after the features were computed on which an eligible order already recorded starts to count
-- (ingestion accepts orders placed up to a day ahead, for till clocks that run fast), so that the customer is
-- re-evaluated that day without a new event.
ALTER TABLE features ADD COLUMN next_order_day date;
