// Shapes of the web API (see the API contract in docs); only what the dashboard reads.

export type AgentState = "online" | "late" | "critical" | "stopping" | "offline" | "unknown";

export interface AgentMetrics {
  ts: number;
  cpu?: number | null;
  mem?: number | null;
  disk?: number | null;
  swap?: number | null;
  load1?: number | null;
  net_rx_bps?: number | null;
  net_tx_bps?: number | null;
  [field: string]: number | null | undefined;
}

export interface Agent {
  id: string;
  state: AgentState | string;
  epoch: number | null;
  since: number | null;
  reason: string | null;
  clean: boolean;
  last_seen: number | null;
  heartbeat_s: number | null;
  host: string | null;
  version: string | null;
  labels: Record<string, string>;
  metrics: AgentMetrics | null;
  alerts?: number;
  /** Seconds between the last two live samples seen by this page (dashboard only). */
  sample_s?: number;
}

export interface Series {
  min: (number | null)[];
  avg: (number | null)[];
  max: (number | null)[];
}

export interface History {
  agent: string;
  start: number;
  end: number;
  step: number;
  source: string;
  ts: number[];
  series: Record<string, Series>;
}

export type CommandState =
  | "queued" | "sent" | "accepted" | "running"
  | "ok" | "failed" | "rejected" | "expired" | "timed_out";

export interface Command {
  id: string;
  agent: string;
  name: string;
  args: Record<string, unknown>;
  state: CommandState | string;
  actor: string;
  job_id: string | null;
  timeout_s: number;
  created_at: number;
  expires_at: number;
  updated_at: number;
  sent_at: number | null;
  accepted_at: number | null;
  finished_at: number | null;
  result: unknown;
  has_result: boolean;
  error_code: string | null;
  error_message: string | null;
}

export interface Alert {
  id: string;
  rule: string;
  agent: string;
  severity: string;
  phase: string;
  started_at: number;
  since: number;
  summary: string;
  value: number | null;
  fired_at: number | null;
  resolved_at: number | null;
  acked_by: string | null;
  acked_at: number | null;
}

export interface Silence {
  id: string;
  agent: string | null;
  rule: string | null;
  starts_at: number;
  ends_at: number;
  created_by: string;
  created_at: number;
  reason: string;
  ended_by: string | null;
  ended_at: number | null;
}

export interface AuditEntry {
  id: number;
  ts: number;
  actor: string;
  action: string;
  target: string;
  detail: Record<string, unknown>;
}

export interface Me {
  user: string;
  role: "viewer" | "operator" | "admin" | string;
  /** The password was made for this user (the first admin's): change it first. */
  must_change_password?: boolean;
}

export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  state: string;
  status: string;
}

/** One message on `/ws` (server → client). */
export interface LiveEvent {
  kind: "agent" | "agent_removed" | "alert" | "command" | "metrics" | string;
  ts: number;
  data: Record<string, unknown>;
}

export interface MetricsFrame {
  agent: string;
  ts: number;
  values: Record<string, number | null>;
}
