"""On-call alerts: freshness and check states -> incidents -> PagerDuty / Slack-style webhooks."""
