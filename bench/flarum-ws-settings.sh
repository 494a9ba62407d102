# Sourced by compare.sh, cluster.sh, presence.sh and profile.sh: the app and the settings
# every side-by-side benchmark gives flarum-ws. One load generator on one
# address opens thousands of connections and triggers as fast as the server
# accepts, so the per-address connection limit and the HTTP API rate limit
# are lifted (the scripts lift sockudo's likewise); statistics rows are off
# because there is no forum database.
APP_ID=1
KEY=bench-key
SECRET=bench-secret
FLARUM_WS_BENCH_ENV=(
  FLARUM_WS_APP_ID=$APP_ID FLARUM_WS_APP_KEY=$KEY FLARUM_WS_APP_SECRET=$SECRET
  FLARUM_WS_HOST=127.0.0.1 FLARUM_WS_STATISTICS=false
  FLARUM_WS_MAX_PRESENCE_MEMBERS=10000 FLARUM_WS_MAX_CONNECTIONS_PER_IP=100000
  FLARUM_WS_API_REQUESTS_PER_SECOND=1000000
)
