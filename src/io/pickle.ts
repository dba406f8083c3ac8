/**
 * A restricted reader of Python pickles: exactly the opcodes a PyTorch state dict uses, and no
 * global that the caller does not hand over. A pickle is a program for a small stack machine;
 * Python's own unpickler imports any module and calls any function the program names, which is
 * why loading an untrusted checkpoint in Python can run code. Here a GLOBAL can only name an
 * entry of the caller's allowlist, REDUCE can only call what that entry implements (building
 * plain values), and anything else is refused with an error naming the file and the opcode or
 * global. No dynamic code, no imports, no attribute setting.
 *
 * Values: null, booleans, numbers (integers within ±2^53), strings, arrays (lists, and frozen
 * arrays for tuples), Maps (dicts), and whatever the allowlist's functions return.
 */

/** A global the caller allows: optionally callable (REDUCE, NEWOBJ), always a plain value. */
export interface PickleGlobal {
  readonly module: string;
  readonly name: string;
  /** Builds a value from the call's arguments; absent for globals that are only passed around (e.g. storage types). */
  readonly call?: (args: readonly unknown[]) => unknown;
}

export interface UnpickleOptions {
  /** The allowlist: `module.name` → global. */
  globals: ReadonlyMap<string, PickleGlobal>;
  /** Resolves a BINPERSID id (e.g. torch's storage references). */
  persistentLoad?: (pid: unknown) => unknown;
  /** Names the source in errors (e.g. `model.bin: data.pkl`). */
  file: string;
}

/** Largest pickle accepted: a state dict's pickle is a few hundred bytes a tensor. */
export const MAX_PICKLE_BYTES = 256 * 2 ** 20;
const MAX_GLOBAL_NAME = 256;

/** The opcodes understood (protocols 2 to 4), by byte. */
const OP = {
  PROTO: 0x80, FRAME: 0x95, STOP: 0x2e,
  MARK: 0x28, EMPTY_DICT: 0x7d, EMPTY_LIST: 0x5d, EMPTY_TUPLE: 0x29,
  TUPLE: 0x74, TUPLE1: 0x85, TUPLE2: 0x86, TUPLE3: 0x87,
  SETITEM: 0x73, SETITEMS: 0x75, APPEND: 0x61, APPENDS: 0x65,
  BINPUT: 0x71, LONG_BINPUT: 0x72, MEMOIZE: 0x94, BINGET: 0x68, LONG_BINGET: 0x6a,
  NONE: 0x4e, NEWTRUE: 0x88, NEWFALSE: 0x89,
  BININT: 0x4a, BININT1: 0x4b, BININT2: 0x4d, LONG1: 0x8a, BINFLOAT: 0x47,
  BINUNICODE: 0x58, SHORT_BINUNICODE: 0x8c,
  GLOBAL: 0x63, STACK_GLOBAL: 0x93, REDUCE: 0x52, NEWOBJ: 0x81, BUILD: 0x62, BINPERSID: 0x51,
} as const;

const OPCODE_NAMES = new Map<number, string>(Object.entries(OP).map(([name, byte]) => [byte, name]));
/** The names of the opcodes accepted, for documentation and errors. */
export const ACCEPTED_OPCODES: readonly string[] = Object.keys(OP);

const MARK = Symbol('mark');

/** Runs the pickle in `bytes` and returns the value it builds. */
export function unpickle(bytes: Uint8Array, options: UnpickleOptions): unknown {
  const { file } = options;
  if (bytes.length > MAX_PICKLE_BYTES) throw new Error(`${file}: pickle of ${bytes.length} bytes is implausibly large`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const stack: unknown[] = [];
  const memo = new Map<number, unknown>();
  let pos = 0;
  let opAt = 0;

  const fail = (why: string): Error => new Error(`${file}: ${why} (pickle byte ${opAt})`);
  const need = (n: number): void => {
    if (pos + n > bytes.length) throw fail('truncated pickle');
  };
  const u8 = (): number => { need(1); return bytes[pos++]; };
  const u16 = (): number => { need(2); const v = view.getUint16(pos, true); pos += 2; return v; };
  const u32 = (): number => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const utf8 = (n: number): string => {
    need(n);
    try {
      return decoder.decode(bytes.subarray(pos, pos + n));
    } catch {
      throw fail('string is not valid UTF-8');
    } finally {
      pos += n;
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0 || end - pos > MAX_GLOBAL_NAME) throw fail('GLOBAL name unterminated or too long');
    const s = utf8(end - pos);
    pos++;
    return s;
  };
  const pop = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) throw fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0 || stack[stack.length - 1] === MARK) throw fail('stack underflow');
    return stack[stack.length - 1];
  };
  /** Pops everything down to the last MARK, and the mark. */
  const popToMark = (): unknown[] => {
    const at = stack.lastIndexOf(MARK);
    if (at < 0) throw fail('no MARK on the stack');
    const items = stack.splice(at);
    items.shift();
    return items;
  };
  const lookupGlobal = (module: string, name: string): PickleGlobal => {
    const g = options.globals.get(`${module}.${name}`);
    if (!g) throw fail(`refused global ${module}.${name}: not one a state dict needs (this reader builds tensors only, never runs code)`);
    return g;
  };
  const call = (callable: unknown, args: unknown, opcode: string): unknown => {
    if (!isGlobal(callable)) throw fail(`${opcode} on ${describe(callable)}: only allowed globals can be called`);
    if (!callable.call) throw fail(`${opcode} on ${callable.module}.${callable.name}, which this reader does not call`);
    if (!isTuple(args)) throw fail(`${opcode} on ${callable.module}.${callable.name} with ${describe(args)} for arguments`);
    try {
      return callable.call(args);
    } catch (err) {
      throw fail(`${callable.module}.${callable.name}: ${(err as Error).message}`);
    }
  };
  const memoPut = (index: number): void => { memo.set(index, top()); };
  const memoGet = (index: number): void => {
    if (!memo.has(index)) throw fail(`memo entry ${index} read before it was written`);
    stack.push(memo.get(index));
  };
  const setItems = (dict: unknown, items: unknown[]): void => {
    if (!(dict instanceof Map)) throw fail(`SETITEM on ${describe(dict)}`);
    if (items.length % 2 !== 0) throw fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) {
      const key = items[i];
      if (key !== null && typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean') {
        throw fail(`dict key of ${describe(key)}`);
      }
      dict.set(key, items[i + 1]);
    }
  };
  const appendItems = (list: unknown, items: unknown[]): void => {
    if (!Array.isArray(list) || Object.isFrozen(list)) throw fail(`APPEND on ${describe(list)}`);
    for (const item of items) list.push(item);
  };

  for (;;) {
    opAt = pos;
    const op = u8();
    switch (op) {
      case OP.PROTO: {
        const version = u8();
        if (version < 2 || version > 5) throw fail(`pickle protocol ${version} is not supported`);
        break;
      }
      case OP.FRAME: need(8); pos += 8; break; // frames only group bytes for buffered reading
      case OP.STOP: {
        const result = pop();
        if (stack.length !== 0) throw fail('STOP with values left on the stack');
        return result;
      }
      case OP.MARK: stack.push(MARK); break;
      case OP.EMPTY_DICT: stack.push(new Map()); break;
      case OP.EMPTY_LIST: stack.push([]); break;
      case OP.EMPTY_TUPLE: stack.push(Object.freeze([])); break;
      case OP.TUPLE: stack.push(Object.freeze(popToMark())); break;
      case OP.TUPLE1: { const a = pop(); stack.push(Object.freeze([a])); break; }
      case OP.TUPLE2: { const b = pop(), a = pop(); stack.push(Object.freeze([a, b])); break; }
      case OP.TUPLE3: { const c = pop(), b = pop(), a = pop(); stack.push(Object.freeze([a, b, c])); break; }
      case OP.SETITEM: { const v = pop(), k = pop(); setItems(top(), [k, v]); break; }
      case OP.SETITEMS: { const items = popToMark(); setItems(top(), items); break; }
      case OP.APPEND: { const v = pop(); appendItems(top(), [v]); break; }
      case OP.APPENDS: { const items = popToMark(); appendItems(top(), items); break; }
      case OP.BINPUT: memoPut(u8()); break;
      case OP.LONG_BINPUT: memoPut(u32()); break;
      case OP.MEMOIZE: memoPut(memo.size); break;
      case OP.BINGET: memoGet(u8()); break;
      case OP.LONG_BINGET: memoGet(u32()); break;
      case OP.NONE: stack.push(null); break;
      case OP.NEWTRUE: stack.push(true); break;
      case OP.NEWFALSE: stack.push(false); break;
      case OP.BININT: need(4); stack.push(view.getInt32(pos, true)); pos += 4; break;
      case OP.BININT1: stack.push(u8()); break;
      case OP.BININT2: stack.push(u16()); break;
      case OP.LONG1: {
        const n = u8();
        if (n > 8) throw fail(`LONG1 of ${n} bytes: integer too large`);
        need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[pos + i]);
        if (n > 0 && bytes[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n); // two's complement
        pos += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) throw fail(`integer ${v} out of range`);
        stack.push(Number(v));
        break;
      }
      case OP.BINFLOAT: need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break;
      case OP.BINUNICODE: stack.push(utf8(u32())); break;
      case OP.SHORT_BINUNICODE: stack.push(utf8(u8())); break;
      case OP.GLOBAL: { const module = line(), name = line(); stack.push(lookupGlobal(module, name)); break; }
      case OP.STACK_GLOBAL: {
        const name = pop(), module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') throw fail('STACK_GLOBAL needs two strings');
        stack.push(lookupGlobal(module, name));
        break;
      }
      case OP.REDUCE: { const args = pop(), callable = pop(); stack.push(call(callable, args, 'REDUCE')); break; }
      case OP.NEWOBJ: { const args = pop(), cls = pop(); stack.push(call(cls, args, 'NEWOBJ')); break; }
      case OP.BUILD: {
        // torch pickles an OrderedDict state dict with its `_metadata` attribute (layer versions):
        // attributes are dropped; BUILD on anything but a dict is refused.
        const state = pop(), obj = top();
        if (!(obj instanceof Map) || !(state === null || state instanceof Map)) throw fail(`BUILD on ${describe(obj)}`);
        break;
      }
      case OP.BINPERSID: {
        const pid = pop();
        if (!options.persistentLoad) throw fail('persistent id in a pickle that has no external data');
        try {
          stack.push(options.persistentLoad(pid));
        } catch (err) {
          throw fail((err as Error).message);
        }
        break;
      }
      default: {
        const name = OPCODE_NAMES.get(op);
        throw fail(`refused opcode ${name ?? `0x${op.toString(16).padStart(2, '0')}`}${
          name ? '' : ` (${JSON.stringify(String.fromCharCode(op))})`}: not one a state dict needs`);
      }
    }
  }
}

export function isGlobal(v: unknown): v is PickleGlobal {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Map) &&
    typeof (v as PickleGlobal).module === 'string' && typeof (v as PickleGlobal).name === 'string' && GLOBAL_TAG in v;
}

/** Marks the objects made by `definePickleGlobal`, so that a value built from data can never pass for one. */
const GLOBAL_TAG = Symbol('pickle-global');

/** A global for the allowlist. */
export function definePickleGlobal(module: string, name: string, call?: (args: readonly unknown[]) => unknown): PickleGlobal {
  return Object.freeze({ module, name, call, [GLOBAL_TAG]: true });
}

export function isTuple(v: unknown): v is readonly unknown[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

/** A short description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (isGlobal(v)) return `${v.module}.${v.name}`;
  if (isTuple(v)) return `a tuple of ${v.length}`;
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v instanceof Map) return 'a dict';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'number' || typeof v === 'boolean') return `the ${typeof v} ${String(v)}`;
  return typeof v === 'object' && v.constructor ? `a ${v.constructor.name}` : typeof v;
}
