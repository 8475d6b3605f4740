import { describe, expect, it } from 'vitest';

import { ClusterModel } from '../src/model';

describe('ClusterModel and node events', () => {
  it('a node_removed event drops the node and its history, and redraws the node list', () => {
    const model = new ClusterModel({ api: { async cluster() { return {}; } } as any });
    const node = (name: string) => ({ name, status: 'offline', metrics: { at: 1, cpu_percent: 5 } });
    (model as any)._setNodes([node('gpu-01'), node('gpu-02')]);
    expect([...model.nodes.keys()].sort()).toEqual(['gpu-01', 'gpu-02']);
    const changed: (string | null)[] = [];
    model.nodeChanged.connect((_, name) => changed.push(name));
    (model.live as any)._received.emit({ type: 'node_removed', name: 'gpu-01' });
    expect([...model.nodes.keys()]).toEqual(['gpu-02']);
    expect(model.history.has('gpu-01')).toBe(false);
    expect(changed).toEqual([null]);
  });
});
