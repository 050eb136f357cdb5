// Mastra agent with Mastra's own AI tracing exported as OpenTelemetry (@mastra/otel-exporter).
// Usage: node agent.mjs --scenario NAME --model-url URL/v1 --otlp-endpoint URL
import { parseArgs } from "node:util";
import { Mastra } from "@mastra/core/mastra";
import { Agent } from "@mastra/core/agent";
import { createTool } from "@mastra/core/tools";
import { createWorkflow, createStep } from "@mastra/core/workflows";
import { OtelExporter } from "@mastra/otel-exporter";
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
// slow_tool_timeout: get_order_status takes SLOW_TOOL_MS; the application gives the run a
// deadline of RUN_DEADLINE_MS (an AbortSignal.timeout passed to generate()).
const SLOW_TOOL_MS = 3000;
const RUN_DEADLINE_MS = 2000;

// --- Tools ---------------------------------------------------------------------------------
let orderCalls = 0;
const searchDocs = createTool({
  id: "search_docs",
  description: "Search the product documentation.",
  inputSchema: z.object({ query: z.string() }),
  execute: async ({ context }) => {
    if (scenario === "empty_retrieval") return [];
    return [
      { title: "Refund policy", text: "Refunds are accepted within 30 days of purchase." },
      { title: "Shipping", text: "Orders ship within 2 business days." },
    ];
  },
});
const getOrderStatus = createTool({
  id: "get_order_status",
  description: "Get the status of an order by its id.",
  inputSchema: z.object({ order_id: z.string() }),
  execute: async ({ context }) => {
    orderCalls += 1;
    if (scenario === "slow_tool_timeout") await sleep(SLOW_TOOL_MS);
    if (scenario === "tool_error_gives_up" || (scenario === "tool_error_retry_ok" && orderCalls === 1)) {
      throw new Error("order service unavailable (503)");
    }
    return `Order ${context.order_id}: shipped`;
  },
});

// --- Agents --------------------------------------------------------------------------------
const openai = createOpenAI({ baseURL: args["model-url"], apiKey: "x" });
const model = openai.chat("gpt-4o-mini");

const supportAgent = new Agent({
  name: "support_agent",
  instructions: "You are a support agent. Use the tools to answer the customer's question.",
  model,
  tools: { search_docs: searchDocs, get_order_status: getOrderStatus },
  maxRetries: 0,
});
const reviewer = new Agent({
  name: "reviewer",
  instructions: "You review answers. Reply APPROVE or REJECT: <reason>.",
  model,
  maxRetries: 0,
});

const MAX_STEPS = 4;
// Agent.maxRetries covers fallback models; the model call's own retries (p-retry around
// doStream, default 2) are modelSettings.maxRetries.
const MODEL_SETTINGS = { maxRetries: 0 };

// critic_rejects: a two-step workflow, the agent answers, the reviewer reviews.
const answerStep = createStep({
  id: "answer",
  inputSchema: z.object({ question: z.string() }),
  outputSchema: z.object({ question: z.string(), answer: z.string() }),
  execute: async ({ inputData, tracingContext }) => {
    const r = await supportAgent.generate(inputData.question, { maxSteps: MAX_STEPS, modelSettings: MODEL_SETTINGS, tracingContext });
    return { question: inputData.question, answer: r.text };
  },
});
const reviewStep = createStep({
  id: "review",
  inputSchema: z.object({ question: z.string(), answer: z.string() }),
  outputSchema: z.object({ answer: z.string(), review: z.string() }),
  execute: async ({ inputData, tracingContext }) => {
    const r = await reviewer.generate(`Question: ${inputData.question}\nAnswer: ${inputData.answer}`, {
      modelSettings: MODEL_SETTINGS,
      tracingContext,
    });
    return { answer: inputData.answer, review: r.text };
  },
});
const supportWorkflow = createWorkflow({
  id: "support_workflow",
  inputSchema: z.object({ question: z.string() }),
  outputSchema: z.object({ answer: z.string(), review: z.string() }),
})
  .then(answerStep)
  .then(reviewStep)
  .commit();

// --- Mastra with AI tracing -> OTLP/HTTP protobuf -------------------------------------------
const traceIds = new Set();
const traceIdCollector = {
  name: "trace-id-collector",
  exportEvent: async (event) => {
    if (event.exportedSpan?.traceId) traceIds.add(event.exportedSpan.traceId);
  },
  shutdown: async () => {},
};
const otelExporter = new OtelExporter({
  provider: { custom: { endpoint: `${args["otlp-endpoint"]}/v1/traces`, protocol: "http/protobuf" } },
});
const mastra = new Mastra({
  agents: { support_agent: supportAgent, reviewer },
  workflows: { support_workflow: supportWorkflow },
  telemetry: { enabled: false },
  logger: false,
  observability: {
    configs: {
      otel: {
        serviceName: "mastra",
        exporters: [
          otelExporter,
          traceIdCollector,
        ],
      },
    },
  },
});

const QUESTIONS = {
  tool_error_gives_up: "What is the status of order A123?",
  tool_error_retry_ok: "What is the status of order A123?",
  bad_tool_args_gives_up: "What is the status of order 12?",
  unknown_tool: "What is the weather in Paris today?",
  slow_tool_timeout: "What is the status of order A123?",
};
const question = QUESTIONS[scenario] ?? "What is your refund policy?";

// OtelExporter loads its OTLP exporter lazily (a dynamic import) on the first span, and
// Mastra does not await its exporters: a run that ends within that import loses its spans
// at shutdown. Set the exporter up before the run (its own setup(), after Mastra's init).
await otelExporter.setup();

async function run() {
  if (scenario === "critic_rejects") {
    const wf = mastra.getWorkflow("support_workflow");
    const runner = await wf.createRunAsync();
    const out = await runner.start({ inputData: { question } });
    console.log(`workflow: ${out.status} ${JSON.stringify(out.result ?? out.error?.message ?? null)}`);
    return;
  }
  const agent = mastra.getAgent("support_agent");
  const abortSignal = scenario === "slow_tool_timeout" ? AbortSignal.timeout(RUN_DEADLINE_MS) : undefined;
  const result = await agent.generate(question, { maxSteps: MAX_STEPS, modelSettings: MODEL_SETTINGS, abortSignal });
  console.log(`answer: ${result.text} (finishReason ${result.finishReason}, ${result.steps?.length} steps)`);
  if (result.error) console.log(`result error: ${result.error?.message ?? result.error}`);
}

try {
  await run();
} catch (err) {
  console.log(`run failed: ${err?.name}: ${err?.message}`);
}
await mastra.shutdown();
console.log(JSON.stringify({ trace_ids: [...traceIds] }));
