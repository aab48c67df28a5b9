-- Rollups, second edition.
--
-- Door reopens per hour and day: a worn door operator reopens on an obstruction it imagines
-- (3 % of closes when healthy, several times that when worn). Devices report them in the
-- telemetry's free-form `extra` (`door_reopens`: reopens before the close just done).
--
-- How many samples carried a levelling error and a vibration reading in the hour: only
-- arrivals carry the first and only runs the second, so weighting an hour's mean by all its
-- samples (heartbeats included), as unit_daily did, skewed the daily means towards quiet
-- hours. Rows rolled up before this migration keep that weighting (their counts are set to
-- the sample count) until a pass recomputes them; reopens start at 0 for them.
ALTER TABLE unit_hourly ADD COLUMN door_reopens integer NOT NULL DEFAULT 0,
                        ADD COLUMN leveling_samples integer NOT NULL DEFAULT 0,
                        ADD COLUMN vibration_samples integer NOT NULL DEFAULT 0;
ALTER TABLE unit_daily ADD COLUMN door_reopens integer NOT NULL DEFAULT 0,
                       ADD COLUMN leveling_samples integer NOT NULL DEFAULT 0,
                       ADD COLUMN vibration_samples integer NOT NULL DEFAULT 0;
UPDATE unit_hourly SET leveling_samples = CASE WHEN leveling_abs_mean IS NULL THEN 0 ELSE samples END,
                       vibration_samples = CASE WHEN vibration_mean IS NULL THEN 0 ELSE samples END;
UPDATE unit_daily SET leveling_samples = CASE WHEN leveling_abs_mean IS NULL THEN 0 ELSE samples END,
                      vibration_samples = CASE WHEN vibration_mean IS NULL THEN 0 ELSE samples END;
