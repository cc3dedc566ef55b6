// Checks CloudFormation templates (YAML with the short intrinsic tags, or JSON) against the CloudFormation resource
// specification (npm @aws-cdk/cfnspec: spec/specification.json): every resource type exists, every property name
// exists (nested property types too), required properties are present, Ref / GetAtt / Sub / If name a parameter,
// resource, attribute or condition that exists; a local artifact path (`aws cloudformation package`) must exist
// and a state machine definition's ${Name} placeholders must match its DefinitionSubstitutions.
// resource, attribute or condition that exists. A property newer than the specification is accepted only when it is
// listed as a named exception (and an exception that no template uses is an error, so the list stays honest).
//
//   node cfn-spec-check.mjs --spec specification.json [--exceptions exceptions.json] TEMPLATE...
//
// Exit 0 when every template passes, 1 with one line per problem ("file: Resources.X.Properties.Y: problem").
// Needs the npm package `yaml` (resolved from NODE_PATH or the working directory's node_modules).
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const YAML = require("yaml");

const args = process.argv.slice(2);
let specPath = null;
let exceptionsPath = null;
const templates = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--spec") specPath = args[++i];
  else if (args[i] === "--exceptions") exceptionsPath = args[++i];
  else templates.push(args[i]);
}
if (!specPath || templates.length === 0) {
  console.error("usage: cfn-spec-check.mjs --spec specification.json [--exceptions exceptions.json] TEMPLATE...");
  process.exit(2);
}

const spec = JSON.parse(readFileSync(specPath, "utf8"));
// Exceptions: [{ "type": "AWS::X::Y" or "AWS::X::Y.PropType", "property": "Name", "reason": "..." }]
const exceptions = exceptionsPath ? JSON.parse(readFileSync(exceptionsPath, "utf8")) : [];
const usedExceptions = new Set();
for (const e of exceptions) {
  if (typeof e.type !== "string" || typeof e.property !== "string" || typeof e.reason !== "string" || e.reason.length < 10) {
    console.error(`${exceptionsPath}: every exception needs type, property and a reason (${JSON.stringify(e)})`);
    process.exit(2);
  }
}

// The short-form intrinsic tags, turned into their long form ({"Ref": x}, {"Fn::Name": value}).
const intrinsic = (tag, name, kinds) =>
  kinds.map((collection) => ({
    tag: `!${tag}`,
    collection: collection === "scalar" ? undefined : collection,
    resolve: (value) => {
      const plain = value && typeof value.toJSON === "function" ? value.toJSON() : value;
      if (name === "Fn::GetAtt" && typeof plain === "string") {
        const dot = plain.indexOf(".");
        return { [name]: [plain.slice(0, dot), plain.slice(dot + 1)] };
      }
      return { [name]: plain };
    },
  }));
const customTags = [
  ...intrinsic("Ref", "Ref", ["scalar"]),
  ...intrinsic("Condition", "Condition", ["scalar"]),
  ...["Sub", "GetAtt", "Join", "Select", "Split", "FindInMap", "GetAZs", "ImportValue", "Base64", "Cidr", "If", "Equals",
    "Not", "And", "Or", "Transform", "ToJsonString", "Length"].flatMap((t) => intrinsic(t, `Fn::${t}`, ["scalar", "seq", "map"])),
];

const problems = [];
const primitive = new Set(["String", "Long", "Integer", "Double", "Boolean", "Timestamp", "Json"]);
const resourceKeys = new Set(["Type", "Properties", "DependsOn", "DeletionPolicy", "UpdateReplacePolicy", "Condition", "Metadata", "CreationPolicy", "UpdatePolicy"]);

// Properties `aws cloudformation package` accepts as a local file path (relative to the template) and replaces with
// the uploaded object: a string there must name an existing file.
const packageable = {
  "AWS::StepFunctions::StateMachine": ["DefinitionS3Location"],
  "AWS::Lambda::Function": ["Code"],
  "AWS::Serverless::Function": ["CodeUri"],
  "AWS::CloudFormation::Stack": ["TemplateURL"],
};

const isIntrinsic = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 1
  && (Object.keys(v)[0] === "Ref" || Object.keys(v)[0].startsWith("Fn::"));

function propertyType(resourceType, name) {
  return spec.PropertyTypes[`${resourceType}.${name}`] ?? spec.PropertyTypes[name] ?? null;
}

for (const file of templates) {
  const text = readFileSync(file, "utf8");
  let template;
  try {
    template = file.endsWith(".json") ? JSON.parse(text) : YAML.parse(text, { customTags, uniqueKeys: true });
  } catch (e) {
    problems.push(`${file}: not a parsable template: ${String(e.message).split("\n")[0]}`);
    continue;
  }
  const report = (where, problem) => problems.push(`${file}: ${where}: ${problem}`);
  const parameters = template.Parameters ?? {};
  const resources = template.Resources ?? {};
  const conditions = template.Conditions ?? {};
  if (Object.keys(resources).length === 0) report("Resources", "none");

  // Names a Ref, GetAtt or ${...} in a Sub may use.
  const checkRef = (where, name) => {
    if (typeof name !== "string") return;
    if (name.startsWith("AWS::")) {
      if (!["AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"].includes(name)) {
        report(where, `Ref to unknown pseudo parameter ${name}`);
      }
    } else if (!(name in parameters) && !(name in resources)) {
      report(where, `Ref to ${name}, which is neither a parameter nor a resource`);
    }
  };
  const checkGetAtt = (where, logical, attribute) => {
    const resource = resources[logical];
    if (!resource) {
      report(where, `GetAtt on ${logical}, which is not a resource`);
      return;
    }
    const attributes = spec.ResourceTypes[resource.Type]?.Attributes;
    if (attributes && typeof attribute === "string" && !(attribute in attributes)) {
      report(where, `GetAtt ${logical}.${attribute}: ${resource.Type} has no attribute ${attribute} (has ${Object.keys(attributes).join(", ")})`);
    }
  };
  // Walks any value for intrinsics (wherever they are) and checks what they name.
  const checkIntrinsics = (where, value) => {
    if (Array.isArray(value)) {
      value.forEach((v, i) => checkIntrinsics(`${where}[${i}]`, v));
      return;
    }
    if (value === null || typeof value !== "object") return;
    for (const [key, v] of Object.entries(value)) {
      if (key === "Ref") checkRef(where, v);
      else if (key === "Fn::GetAtt" && Array.isArray(v)) checkGetAtt(where, v[0], v[1]);
      else if (key === "Fn::If" && Array.isArray(v) && !(v[0] in conditions)) report(where, `Fn::If on unknown condition ${v[0]}`);
      else if (key === "Condition" && typeof v === "string" && where.startsWith("Conditions") && !(v in conditions)) report(where, `unknown condition ${v}`);
      else if (key === "Fn::Sub") {
        const [body, vars] = Array.isArray(v) ? v : [v, {}];
        if (typeof body === "string") {
          for (const m of body.matchAll(/\$\{([^!}][^}]*)\}/g)) {
            const name = m[1].trim();
            if (vars && name in vars) continue;
            const dot = name.indexOf(".");
            if (dot > 0 && !name.startsWith("AWS::")) checkGetAtt(where, name.slice(0, dot), name.slice(dot + 1));
            else checkRef(where, name);
          }
        }
      }
      checkIntrinsics(`${where}.${key}`, v);
    }
  };

  // Checks one property value against its specification (a primitive, a list/map of items, or a property type).
  const checkValue = (where, resourceType, propSpec, value) => {
    if (isIntrinsic(value)) {
      const [key, v] = Object.entries(value)[0];
      if (key === "Fn::If" && Array.isArray(v) && v.length === 3) {
        for (const branch of [v[1], v[2]]) {
          if (!(isIntrinsic(branch) && branch.Ref === "AWS::NoValue")) checkValue(where, resourceType, propSpec, branch);
        }
      }
      return;
    }
    if (propSpec.PrimitiveType) {
      if (propSpec.PrimitiveType !== "Json" && value !== null && typeof value === "object") report(where, `expected a ${propSpec.PrimitiveType}, found ${Array.isArray(value) ? "a list" : "an object"}`);
      return;
    }
    if (propSpec.Type === "List" || propSpec.Type === "Map") {
      const isList = propSpec.Type === "List";
      if (isList ? !Array.isArray(value) : (value === null || typeof value !== "object" || Array.isArray(value))) {
        report(where, `expected a ${isList ? "list" : "map"}`);
        return;
      }
      if (propSpec.PrimitiveItemType || !propSpec.ItemType) return;
      const itemSpec = { Type: propSpec.ItemType };
      for (const [k, item] of Object.entries(value)) checkValue(isList ? `${where}[${k}]` : `${where}.${k}`, resourceType, itemSpec, item);
      return;
    }
    const typeSpec = propertyType(resourceType, propSpec.Type);
    if (!typeSpec) {
      report(where, `the specification has no property type ${resourceType}.${propSpec.Type}`);
      return;
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      report(where, `expected an object (${propSpec.Type})`);
      return;
    }
    checkProperties(where, resourceType, `${resourceType}.${propSpec.Type}`, typeSpec.Properties ?? {}, value);
  };

  const checkProperties = (where, resourceType, specName, propsSpec, props) => {
    for (const [name, value] of Object.entries(props)) {
      const propSpec = propsSpec[name];
      if (!propSpec) {
        const exception = exceptions.findIndex((e) => e.type === specName && e.property === name);
        if (exception >= 0) {
          usedExceptions.add(exception);
        } else {
          const near = Object.keys(propsSpec).filter((k) => k.toLowerCase() === name.toLowerCase());
          report(`${where}.${name}`, `${specName} has no property ${name}${near.length ? ` (did you mean ${near[0]}?)` : ""}; a property newer than the specification needs a named exception`);
        }
        continue;
      }
      checkValue(`${where}.${name}`, resourceType, propSpec, value);
    }
    for (const [name, propSpec] of Object.entries(propsSpec)) {
      if (propSpec.Required && !(name in props)) report(where, `${specName} requires ${name}`);
    }
  };

  for (const [logical, resource] of Object.entries(resources)) {
    const where = `Resources.${logical}`;
    if (resource === null || typeof resource !== "object") {
      report(where, "not an object");
      continue;
    }
    for (const key of Object.keys(resource)) if (!resourceKeys.has(key)) report(where, `unknown resource attribute ${key}`);
    const type = resource.Type;
    if (typeof type !== "string") {
      report(where, "no Type");
      continue;
    }
    if (resource.Condition !== undefined && !(resource.Condition in conditions)) report(where, `unknown condition ${resource.Condition}`);
    for (const dep of [resource.DependsOn ?? []].flat()) if (!(dep in resources)) report(`${where}.DependsOn`, `${dep} is not a resource`);
    checkIntrinsics(`${where}.Properties`, resource.Properties ?? {});
    if (type.startsWith("Custom::") || type === "AWS::CloudFormation::CustomResource") continue;
    const typeSpec = spec.ResourceTypes[type];
    if (!typeSpec) {
      report(where, `resource type ${type} is not in the CloudFormation resource specification ${spec.ResourceSpecificationVersion}`);
      continue;
    }
    const properties = { ...(resource.Properties ?? {}) };
    for (const name of packageable[type] ?? []) {
      if (typeof properties[name] === "string") {
        const local = path.resolve(path.dirname(file), properties[name]);
        if (!existsSync(local)) {
          report(`${where}.Properties.${name}`, `local artifact ${properties[name]} (for aws cloudformation package) does not exist`);
        } else if (type === "AWS::StepFunctions::StateMachine") {
          // Every ${Name} in the definition must be substituted, and every substitution used.
          const used = new Set([...readFileSync(local, "utf8").matchAll(/\$\{([A-Za-z0-9_]+)\}/g)].map((m) => m[1]));
          const given = new Set(Object.keys(properties.DefinitionSubstitutions ?? {}));
          for (const u of used) if (!given.has(u)) report(`${where}.Properties.DefinitionSubstitutions`, `${properties[name]} uses \${${u}}, which is not substituted`);
          for (const g of given) if (!used.has(g)) report(`${where}.Properties.DefinitionSubstitutions.${g}`, `not used by ${properties[name]}`);
        }
        delete properties[name];
        if (typeSpec.Properties?.[name]?.Required) properties[name] = {};
      }
    }
    checkProperties(`${where}.Properties`, type, type, typeSpec.Properties ?? {}, properties);
  }
  checkIntrinsics("Conditions", conditions);
  checkIntrinsics("Outputs", template.Outputs ?? {});
}

exceptions.forEach((e, i) => {
  if (!usedExceptions.has(i)) problems.push(`${exceptionsPath}: exception ${e.type}.${e.property} is used by no template (remove it)`);
});
for (const p of problems) console.log(p);
console.log(`cfn-spec-check: ${templates.length} template(s) against specification ${spec.ResourceSpecificationVersion}: ${problems.length} problem(s)`);
process.exit(problems.length === 0 ? 0 : 1);
