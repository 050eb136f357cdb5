// LangGraph.js ReAct agent (createReactAgent) traced by OpenInference's LangChain.js
// instrumentation. Usage: node agent.mjs --scenario NAME --model-url URL/v1 --otlp-endpoint URL
import { parseArgs } from "node:util";
import { NodeTracerProvider, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-node";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-proto";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { LangChainInstrumentation } from "@arizeai/openinference-instrumentation-langchain";
import * as CallbackManagerModule from "@langchain/core/callbacks/manager";
import { tool } from "@langchain/core/tools";
import { ChatOpenAI } from "@langchain/openai";
import { createReactAgent } from "@langchain/langgraph/prebuilt";
import { Annotation, StateGraph, START, END } from "@langchain/langgraph";
import { z } from "zod";

const { values: args } = parseArgs({
  options: {
    scenario: { type: "string" },
    "model-url": { type: "string" },
    "otlp-endpoint": { type: "string" },
  },
});
const scenario = args.scenario;

// --- OpenTelemetry + OpenInference ---------------------------------------------------------
const traceIds = new Set();
const provider = new NodeTracerProvider({
  resource: resourceFromAttributes({ "service.name": "langgraphjs_openinference" }),
  spanProcessors: [
    { onStart: (span) => traceIds.add(span.spanContext().traceId), onEnd() {}, forceFlush: async () => {}, shutdown: async () => {} },
    new SimpleSpanProcessor(new OTLPTraceExporter({ url: `${args["otlp-endpoint"]}/v1/traces` })),
  ],
});
provider.register();
const lcInstrumentation = new LangChainInstrumentation();
lcInstrumentation.manuallyInstrument(CallbackManagerModule);

// --- Tools ---------------------------------------------------------------------------------
let orderCalls = 0;
const searchDocs = tool(
  async ({ query }) => {
    if (scenario === "empty_retrieval") return [];
    return [
      { title: "Refund policy", text: "Refunds are accepted within 30 days of purchase." },
      { title: "Shipping", text: "Orders ship within 2 business days." },
    ];
  },
  { name: "search_docs", description: "Search the product documentation.", schema: z.object({ query: z.string() }) },
);
const getOrderStatus = tool(
  async ({ order_id }) => {
    orderCalls += 1;
    if (scenario === "tool_error_gives_up" || (scenario === "tool_error_retry_ok" && orderCalls === 1)) {
      throw new Error("order service unavailable (503)");
    }
    return `Order ${order_id}: shipped`;
  },
  {
    name: "get_order_status",
    description: "Get the status of an order by its id.",
    schema: z.object({ order_id: z.string() }),
  },
);

// --- Agents --------------------------------------------------------------------------------
const llm = new ChatOpenAI({
  model: "gpt-4o-mini",
  apiKey: "x",
  configuration: { baseURL: args["model-url"] },
  maxRetries: 0,
});
const supportAgent = createReactAgent({
  llm,
  tools: [searchDocs, getOrderStatus],
  prompt: "You are a support agent. Use the tools to answer the customer's question.",
  name: "support_agent",
});
const reviewer = createReactAgent({
  llm,
  tools: [],
  prompt: "You review answers. Reply APPROVE or REJECT: <reason>.",
  name: "reviewer",
});
// Step limit: LangGraph counts supersteps (agent, tools, agent, ...): 8 = 4 model turns.
const RECURSION_LIMIT = 8;

// critic_rejects: a two-node graph, the agent answers, the reviewer reviews.
const WorkflowState = Annotation.Root({
  question: Annotation(),
  answer: Annotation(),
  verdict: Annotation(),
});
const supportWorkflow = new StateGraph(WorkflowState)
  .addNode("support", async (state) => {
    const out = await supportAgent.invoke({ messages: [{ role: "user", content: state.question }] });
    return { answer: out.messages.at(-1).content };
  })
  .addNode("review", async (state) => {
    const out = await reviewer.invoke({
      messages: [{ role: "user", content: `Question: ${state.question}\nAnswer: ${state.answer}` }],
    });
    return { verdict: out.messages.at(-1).content };
  })
  .addEdge(START, "support")
  .addEdge("support", "review")
  .addEdge("review", END)
  .compile({ name: "support_workflow" });

const QUESTIONS = {
  tool_error_gives_up: "What is the status of order A123?",
  tool_error_retry_ok: "What is the status of order A123?",
  bad_tool_args_gives_up: "What is the status of order 12?",
};
const question = QUESTIONS[scenario] ?? "What is your refund policy?";

async function run() {
  if (scenario === "critic_rejects") {
    const out = await supportWorkflow.invoke({ question }, { recursionLimit: RECURSION_LIMIT });
    console.log(`review: ${out.verdict}`);
    return;
  }
  const out = await supportAgent.invoke(
    { messages: [{ role: "user", content: question }] },
    { recursionLimit: RECURSION_LIMIT },
  );
  console.log(`answer: ${out.messages.at(-1).content}`);
}

try {
  await run();
} catch (err) {
  console.log(`run failed: ${err?.name}: ${err?.message}`);
}
await provider.forceFlush();
await provider.shutdown();
console.log(JSON.stringify({ trace_ids: [...traceIds] }));
