// Wiring of the driver's template port to the pure v0.4 template synthesis (src/template/synthesize.ts).
import type { DriverSandbox } from '../gen/compute_driver.js';
import { synthesisProblem, synthesizeActorTemplate, type SynthesisConfig } from '../template/synthesize.js';
import type { TemplatePort } from './ports.js';

export function templatePort(cfg: SynthesisConfig): TemplatePort {
  return {
    validate: (sb: DriverSandbox) => {
      const p = synthesisProblem(sb, cfg);
      if (p) throw p;
    },
    // Launch mode follows the sandbox: on when it carries launch authentication (v0.1 gateways).
    synthesize: (sb) => synthesizeActorTemplate(sb, cfg),
  };
}
