//! The fixed vocabulary of simulated systems: models, tools, routes, cohorts.

use rand::rngs::SmallRng;
use rand::Rng;

use super::text::{city, date, pick};

/// An LLM as instrumentations name it.
#[derive(Debug, PartialEq)]
pub(crate) struct Model {
    pub name: &'static str,
    /// `gen_ai.provider.name` / OpenInference `llm.provider`.
    pub provider: &'static str,
    /// OpenInference `llm.system`, Traceloop `gen_ai.system`.
    pub system: &'static str,
    /// LangChain class (the OpenInference / traceAI span name).
    pub class: &'static str,
    /// Traceloop span name prefix (`openai.chat`).
    pub traceloop_prefix: &'static str,
    pub host: &'static str,
    pub path: &'static str,
    pub response_id_prefix: &'static str,
}

pub(crate) const MODELS: &[Model] = &[
    Model {
        name: "gpt-4o",
        provider: "openai",
        system: "openai",
        class: "ChatOpenAI",
        traceloop_prefix: "openai",
        host: "api.openai.com",
        path: "/v1/chat/completions",
        response_id_prefix: "chatcmpl-",
    },
    Model {
        name: "gpt-4o-mini",
        provider: "openai",
        system: "openai",
        class: "ChatOpenAI",
        traceloop_prefix: "openai",
        host: "api.openai.com",
        path: "/v1/chat/completions",
        response_id_prefix: "chatcmpl-",
    },
    Model {
        name: "claude-3-5-sonnet-20241022",
        provider: "anthropic",
        system: "anthropic",
        class: "ChatAnthropic",
        traceloop_prefix: "anthropic",
        host: "api.anthropic.com",
        path: "/v1/messages",
        response_id_prefix: "msg_",
    },
    Model {
        name: "gpt-4.1",
        provider: "openai",
        system: "openai",
        class: "ChatOpenAI",
        traceloop_prefix: "openai",
        host: "api.openai.com",
        path: "/v1/chat/completions",
        response_id_prefix: "chatcmpl-",
    },
];

/// A cheap model used for judges and routers.
pub(crate) const JUDGE_MODEL: &Model = &MODELS[1];

pub(crate) fn model_by_name(name: &str) -> &'static Model {
    MODELS.iter().find(|m| m.name == name).unwrap_or(&MODELS[0])
}

/// A tool an agent can call.
#[derive(Debug)]
pub(crate) struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    /// JSON schema of the arguments.
    pub schema: &'static str,
    /// `(method, host, port, path prefix)` of the API it calls, if any.
    pub api: Option<(&'static str, &'static str, u16, &'static str)>,
    pub args: fn(&mut SmallRng) -> String,
    pub result: fn(&mut SmallRng) -> String,
    /// Arguments the planner invents that fail validation, and the validation message.
    pub bad_args: fn(&mut SmallRng) -> (String, String),
    /// An `{"error": ...}` result returned as data.
    pub error_result: fn(&mut SmallRng) -> String,
}

impl PartialEq for ToolDef {
    fn eq(&self, other: &ToolDef) -> bool {
        self.name == other.name
    }
}

fn weather_args(rng: &mut SmallRng) -> String {
    format!(r#"{{"city": "{}", "date": "{}"}}"#, city(rng), date(rng))
}
fn weather_result(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"forecast": "{}", "high_c": {}, "low_c": {}, "precip_mm": {}}}"#,
        pick(
            rng,
            &[
                "sunny",
                "light rain",
                "overcast",
                "thunderstorms",
                "snow showers"
            ]
        ),
        rng.random_range(5..35),
        rng.random_range(-5..15),
        rng.random_range(0..30)
    )
}
fn weather_bad(rng: &mut SmallRng) -> (String, String) {
    let when = pick(
        rng,
        &["next friday", "tomorrow evening", "in 3 days", "12/31"],
    );
    (
        format!(r#"{{"city": "{}", "date": "{when}"}}"#, city(rng)),
        format!("1 validation error for get_weather\ndate\n  Input should be a valid date or datetime, input is too short [type=date_from_datetime_parsing, input_value='{when}', input_type=str]"),
    )
}
fn weather_error(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"error": "City '{}{}' not found (code 404)"}}"#,
        city(rng),
        pick(rng, &["x", "nn", "e", "-sur-Mer"])
    )
}

fn flights_args(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"origin": "{}", "destination": "{}", "departure_date": "{}", "passengers": {}}}"#,
        pick(rng, &["LYS", "KIX", "DEN", "LIS", "NBO", "YYZ"]),
        pick(rng, &["CDG", "HND", "SFO", "OPO", "JFK", "ICN"]),
        date(rng),
        rng.random_range(1..5)
    )
}
fn flights_result(rng: &mut SmallRng) -> String {
    let n = rng.random_range(1..4);
    let mut s = String::from(r#"{"flights": ["#);
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&format!(
            r#"{{"flight": "{}{}", "depart": "{:02}:{:02}", "price_eur": {}}}"#,
            pick(rng, &["AF", "LH", "UA", "TP", "KL"]),
            rng.random_range(100..9999),
            rng.random_range(5..23),
            rng.random_range(0..12) * 5,
            rng.random_range(89..1400)
        ));
    }
    s.push_str("]}");
    s
}
fn flights_bad(rng: &mut SmallRng) -> (String, String) {
    let pax = pick(rng, &["two", "a couple", "-1", "0"]);
    (
        format!(r#"{{"origin": "Paris", "destination": "Tokyo", "passengers": "{pax}"}}"#),
        format!("2 validation errors for search_flights\ndeparture_date\n  Field required [type=missing, input_value={{'origin': 'Paris', 'destination': 'Tokyo'}}, input_type=dict]\npassengers\n  Input should be a valid integer, unable to parse string as an integer [type=int_parsing, input_value='{pax}', input_type=str]"),
    )
}
fn flights_error(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"error": "No availability: fare class {} sold out on {}", "retryable": false}}"#,
        pick(rng, &["Y", "M", "Q", "economy"]),
        date(rng)
    )
}

fn order_args(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"order_id": "ORD-{}"}}"#,
        rng.random_range(100000..999999)
    )
}
fn order_result(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"status": "{}", "items": {}, "total_usd": {}.{:02}, "carrier": "{}"}}"#,
        pick(rng, &["shipped", "processing", "delivered", "returned"]),
        rng.random_range(1..6),
        rng.random_range(9..900),
        rng.random_range(0..100),
        pick(rng, &["UPS", "DHL", "FedEx"])
    )
}
fn order_bad(rng: &mut SmallRng) -> (String, String) {
    let id = rng.random_range(1000..99999);
    (
        format!(r#"{{"order_id": {id}}}"#),
        format!("1 validation error for lookup_order\norder_id\n  String should match pattern '^ORD-[0-9]{{6}}$' [type=string_pattern_mismatch, input_value={id}, input_type=int]"),
    )
}
fn order_error(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"error": "order ORD-{} belongs to another account", "code": "FORBIDDEN"}}"#,
        rng.random_range(100000..999999)
    )
}

fn invoice_args(rng: &mut SmallRng) -> String {
    format!(r#"{{"invoice_id": "in_{}"}}"#, super::text::hex_id(rng, 8))
}
fn invoice_result(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"amount_due": {}, "currency": "{}", "status": "{}", "period": "2025-{:02}"}}"#,
        rng.random_range(10..5000),
        pick(rng, &["USD", "EUR", "GBP"]),
        pick(rng, &["open", "paid", "void"]),
        rng.random_range(1..13)
    )
}
fn invoice_bad(rng: &mut SmallRng) -> (String, String) {
    let month = pick(rng, &["last month", "March", "Q2"]);
    (
        format!(r#"{{"month": "{month}"}}"#),
        format!("1 validation error for get_invoice\ninvoice_id\n  Field required [type=missing, input_value={{'month': '{month}'}}, input_type=dict]"),
    )
}
fn invoice_error(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"error": "Stripe API error: No such invoice: 'in_{}'"}}"#,
        super::text::hex_id(rng, 8)
    )
}

fn ticket_args(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"subject": "{}", "priority": "{}"}}"#,
        pick(
            rng,
            &[
                "Cannot log in with SSO",
                "Refund not received",
                "Export stuck at 99%",
                "Webhook deliveries failing"
            ]
        ),
        pick(rng, &["low", "normal", "high"])
    )
}
fn ticket_result(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"ticket_id": "T-{}", "status": "open"}}"#,
        rng.random_range(10000..99999)
    )
}
fn ticket_bad(rng: &mut SmallRng) -> (String, String) {
    let p = pick(rng, &["urgent!!", "P0", "asap", "critical"]);
    (
        format!(r#"{{"subject": "help", "priority": "{p}"}}"#),
        format!("1 validation error for create_ticket\npriority\n  Input should be 'low', 'normal' or 'high' [type=enum, input_value='{p}', input_type=str]"),
    )
}
fn ticket_error(rng: &mut SmallRng) -> String {
    format!(
        r#"{{"error": "quota exceeded: {} open tickets for this workspace (max 50)"}}"#,
        rng.random_range(50..80)
    )
}

pub(crate) const TRAVEL_TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "get_weather",
        description: "Get the weather forecast for a city on a date.",
        schema: r#"{"type":"object","properties":{"city":{"type":"string"},"date":{"type":"string","format":"date"}},"required":["city","date"]}"#,
        api: Some(("GET", "api.weather.example", 443, "/v1/forecast")),
        args: weather_args,
        result: weather_result,
        bad_args: weather_bad,
        error_result: weather_error,
    },
    ToolDef {
        name: "search_flights",
        description: "Search flights between two airports on a date.",
        schema: r#"{"type":"object","properties":{"origin":{"type":"string"},"destination":{"type":"string"},"departure_date":{"type":"string","format":"date"},"passengers":{"type":"integer","minimum":1}},"required":["origin","destination","departure_date"]}"#,
        api: Some(("GET", "api.flights.example", 443, "/v2/search")),
        args: flights_args,
        result: flights_result,
        bad_args: flights_bad,
        error_result: flights_error,
    },
];

pub(crate) const SUPPORT_TOOLS: &[ToolDef] = &[
    ToolDef {
        name: "lookup_order",
        description: "Look up an order by its id.",
        schema: r#"{"type":"object","properties":{"order_id":{"type":"string","pattern":"^ORD-[0-9]{6}$"}},"required":["order_id"]}"#,
        api: Some(("GET", "orders.internal", 8080, "/orders")),
        args: order_args,
        result: order_result,
        bad_args: order_bad,
        error_result: order_error,
    },
    ToolDef {
        name: "get_invoice",
        description: "Fetch an invoice by id.",
        schema: r#"{"type":"object","properties":{"invoice_id":{"type":"string"}},"required":["invoice_id"]}"#,
        api: Some(("GET", "billing.internal", 8080, "/invoices")),
        args: invoice_args,
        result: invoice_result,
        bad_args: invoice_bad,
        error_result: invoice_error,
    },
    ToolDef {
        name: "create_ticket",
        description: "Open a support ticket.",
        schema: r#"{"type":"object","properties":{"subject":{"type":"string"},"priority":{"enum":["low","normal","high"]}},"required":["subject"]}"#,
        api: Some(("POST", "support.example.com", 443, "/api/tickets")),
        args: ticket_args,
        result: ticket_result,
        bad_args: ticket_bad,
        error_result: ticket_error,
    },
];

/// Names a planner invents for tools that do not exist.
pub(crate) const UNKNOWN_TOOLS: &[&str] = &[
    "get_wether",
    "web_search",
    "lookup_orders",
    "book_hotel",
    "refund_order",
    "python_repl",
];

pub(crate) const PROMPT_VERSIONS: &[&str] = &["v5", "v6", "v7", "v8"];
pub(crate) const USER_SEGMENTS: &[&str] = &["free", "pro", "enterprise", "internal"];
