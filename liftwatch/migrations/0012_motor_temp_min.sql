-- The motor's coolest reading per hour and day: its temperature at rest, which sits near the
-- machine room's whatever the traffic. A motor that stays hot at rest (bearing or brake drag,
-- a failing fan) shows there, while its daily peak hides among busy healthy units: scoring
-- against the simulator's truth, two overheating lifts stayed under the peak's threshold.
-- Rows rolled up before this migration have none until a pass recomputes them.
ALTER TABLE unit_hourly ADD COLUMN motor_temp_min real;
ALTER TABLE unit_daily ADD COLUMN motor_temp_min real;
