// Vercel AI SDK agent (ToolLoopAgent) with the SDK's own OpenTelemetry spans.
// Usage: node agent.mjs --scenario NAME --model-url URL/v1 --otlp-endpoint URL
import { parseArgs } from "node:util";
import { trace } from "@opentelemetry/api";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { ToolLoopAgent, stepCountIs, tool } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { z } from "zod";
import { setTimeout as sleep } from "node:timers/promises";

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string" },
    "model-url": { type: "string" },
    "otlp-endpoint": { type: "string" },
  },
});
const scenario = args.scenario;
// slow_tool_timeout: get_order_status takes SLOW_TOOL_MS; the run has the AI SDK's own
// `timeout` of RUN_DEADLINE_MS, whose abort signal reaches the tool.
const SLOW_TOOL_MS = 3000;
const RUN_DEADLINE_MS = 2000;

// --- OpenTelemetry: OTLP/HTTP protobuf to <endpoint>/v1/traces ---------------------------
const traceIds = new Set();
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "vercel_ai" }),
  spanProcessors: [
    { onStart: (span) => traceIds.add(span.spanContext().traceId), onEnd() {}, forceFlush: async () => {}, shutdown: async () => {} },
    new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${args["otlp-endpoint"]}/v1/traces` })),
  ],
});
provider.register();

// --- Tools ---------------------------------------------------------------------------------
let orderCalls = 0;
const searchDocs = tool({
  description: "Search the product documentation.",
  inputSchema: z.object({ query: z.string() }),
  execute: async ({ query }) => {
    if (scenario === "empty_retrieval") return [];
    return [
      { title: "Refund policy", text: "Refunds are accepted within 30 days of purchase." },
      { title: "Shipping", text: "Orders ship within 2 business days." },
    ];
  },
});
const getOrderStatus = tool({
  description: "Get the status of an order by its id.",
  inputSchema: z.object({ order_id: z.string() }),
  execute: async ({ order_id }, { abortSignal }) => {
    orderCalls += 1;
    if (scenario === "slow_tool_timeout") await sleep(SLOW_TOOL_MS, undefined, { signal: abortSignal });
    if (scenario === "tool_error_gives_up" || (scenario === "tool_error_retry_ok" && orderCalls === 1)) {
      throw new Error("order service unavailable (503)");
    }
    return `Order ${order_id}: shipped`;
  },
});

// --- Agents --------------------------------------------------------------------------------
const openai = createOpenAI({ baseURL: args["model-url"], apiKey: "x" });
const model = openai.chat("gpt-4o-mini");

const supportAgent = new ToolLoopAgent({
  model,
  instructions: "You are a support agent. Use the tools to answer the customer's question.",
  tools: { search_docs: searchDocs, get_order_status: getOrderStatus },
  stopWhen: stepCountIs(4),
  maxRetries: 0,
  experimental_telemetry: { isEnabled: true, functionId: "support_agent" },
});

const reviewer = new ToolLoopAgent({
  model,
  instructions: "You review answers. Reply APPROVE or REJECT: <reason>.",
  maxRetries: 0,
  experimental_telemetry: { isEnabled: true, functionId: "reviewer" },
});

const QUESTIONS = {
  tool_error_gives_up: "What is the status of order A123?",
  tool_error_retry_ok: "What is the status of order A123?",
  bad_tool_args_gives_up: "What is the status of order 12?",
  unknown_tool: "What is the weather in Paris today?",
  slow_tool_timeout: "What is the status of order A123?",
};
const question = QUESTIONS[scenario] ?? "What is your refund policy?";

async function run() {
  if (scenario === "critic_rejects") {
    const tracer = trace.getTracer("support-workflow");
    await tracer.startActiveSpan("support workflow", async (span) => {
      try {
        const answer = await supportAgent.generate({ prompt: question });
        const review = await reviewer.generate({
          prompt: `Question: ${question}\nAnswer: ${answer.text}`,
        });
        console.log(`review: ${review.text}`);
      } finally {
        span.end();
      }
    });
    return;
  }
  const timeout = scenario === "slow_tool_timeout" ? RUN_DEADLINE_MS : undefined;
  const result = await supportAgent.generate({ prompt: question, timeout });
  console.log(`answer: ${result.text} (finishReason ${result.finishReason}, ${result.steps.length} steps)`);
}

try {
  await run();
} catch (err) {
  console.log(`run failed: ${err?.name}: ${err?.message}`);
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ trace_ids: [...traceIds] }));
