-- POST /api/2.0/mlflow/runs/log-metric with a small JSON body, as the MLflow client logs a metric.
-- The Authorization header comes from the environment so one script serves every target.
-- The run is the one the bench upstream knows (bench/lib/mlflow-fixture.ts: BENCH_RUN_ID, METRIC_BODY):
-- mlgate resolves it to its experiment before it lets the metric through.
wrk.method = "POST"
wrk.body = '{"run_id":"4f2e9c1d8a7b4e3f9a1b2c3d4e5f6a7b","key":"loss","value":0.2513,"timestamp":1700000000000,"step":42}'
wrk.headers["Content-Type"] = "application/json"
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end
-- A browser session instead (the shared-state case): its cookie, and the Origin a page of the gateway sends.
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
  wrk.headers["Origin"] = os.getenv("BENCH_ORIGIN")
end
