-- A recipient or user id "" is absent (README, "Storing"). Statuses of users known by user
-- id only carry recipient_id "", which the least-value merge used to keep over any phone
-- number; the sink no longer stores "". Rows stored before become NULL: the next status,
-- incoming message or sender's record of the wamid fills them in. Only rows holding ""
-- are rewritten.
UPDATE messages SET phone_number = NULL WHERE phone_number = '';
UPDATE messages SET user_id = NULL WHERE user_id = '';
