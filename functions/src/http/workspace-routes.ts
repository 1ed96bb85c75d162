import { pipeline } from 'node:stream/promises';
import type { Request, Response, Router } from 'express';
import { ArchiveQuery, type WorkspaceListing } from '../contract/api.js';
import { PUBLIC_ROUTES } from '../contract/routes.js';
import { ServiceError } from '../conversations/errors.js';
import type { WorkspaceService } from '../conversations/workspace-service.js';
import { bodyBytes } from './body.js';
import { KeyedSlots } from './keyed-slots.js';

/**
 * Changes one user may have in flight at once (per API instance): each holds its file in memory
 * (up to the per-file limit) while the state is rewritten.
 */
export const MAX_CHANGES_PER_USER = 2;

type FileParams = { conversationId: string; path: string[] | string };

/** The rest of the URL after `files/`, as Express split and decoded it: the file's path in the workspace. */
const pathOf = (req: Request<FileParams>): string => (Array.isArray(req.params.path) ? req.params.path.join('/') : req.params.path);

/**
 * A download is always an attachment, never rendered on the API's origin (the page's): a file the
 * agent wrote may be HTML or SVG with scripts. nosniff and a sandboxing policy hold even if a
 * browser were to open it.
 */
function asAttachment(res: Response, filename: string, bytes: number): void {
  res.attachment(filename);
  res.setHeader('content-length', String(bytes));
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('content-security-policy', "sandbox; default-src 'none'");
  res.setHeader('cache-control', 'private, no-store');
}

/** The workspace's files (README "Workspace files"), on the public router, whose id checks they share. */
export function addWorkspaceRoutes(
  router: Router,
  workspace: WorkspaceService,
  userOf: (req: Request) => Promise<string>,
  limits: { maxFileBytes: number },
): void {
  const changing = new KeyedSlots(MAX_CHANGES_PER_USER);
  /** A change takes its place before its body is read: refused, it has cost nothing. */
  const holdChange = (userId: string, res: Response) => {
    if (!changing.take(userId)) {
      throw new ServiceError('rate_limited', `at most ${changing.max} file changes may be in flight at once per user`, {
        limit: 'file_changes',
        max: changing.max,
        retryAfterSeconds: 1,
      });
    }
    res.on('close', () => changing.give(userId));
  };

  router.get(PUBLIC_ROUTES.files, async (req: Request<{ conversationId: string }>, res) => {
    const body: WorkspaceListing = await workspace.list(await userOf(req), req.params.conversationId);
    res.json(body);
  });

  router.get(PUBLIC_ROUTES.file, async (req: Request<FileParams>, res) => {
    const path = pathOf(req);
    const opened = await workspace.open(await userOf(req), req.params.conversationId, path);
    asAttachment(res, path.split('/').at(-1) ?? 'file', opened.file.size);
    if (opened.file.modifiedAt !== null) res.setHeader('last-modified', new Date(opened.file.modifiedAt).toUTCString());
    await pipeline(opened.stream, res).catch(() => res.destroy());
  });

  router.put(PUBLIC_ROUTES.file, async (req: Request<FileParams>, res) => {
    const userId = await userOf(req);
    const declared = Number(req.get('content-length'));
    const tooLarge = () => new ServiceError('too_large', `a file may be at most ${limits.maxFileBytes} bytes`, { maxFileBytes: limits.maxFileBytes });
    if (declared > limits.maxFileBytes) throw tooLarge();
    holdChange(userId, res);
    const data = await bodyBytes(req, limits.maxFileBytes).catch((error: unknown) => {
      throw error instanceof ServiceError && error.code === 'too_large' ? tooLarge() : error;
    });
    await workspace.put(userId, req.params.conversationId, pathOf(req), data);
    res.status(201).json({ path: pathOf(req), size: data.length });
  });

  router.delete(PUBLIC_ROUTES.file, async (req: Request<FileParams>, res) => {
    const userId = await userOf(req);
    holdChange(userId, res);
    await workspace.remove(userId, req.params.conversationId, pathOf(req));
    res.status(204).end();
  });

  router.get(PUBLIC_ROUTES.archive, async (req: Request<{ conversationId: string }>, res) => {
    const userId = await userOf(req);
    const query = ArchiveQuery.safeParse(req.query);
    if (!query.success) throw new ServiceError('invalid_request', "format must be 'tar.gz' or 'zip'");
    const { format } = query.data;
    const { archive } = await workspace.archive(userId, req.params.conversationId, format);
    asAttachment(res, `workspace-${req.params.conversationId}.${format}`, archive.bytes);
    await pipeline(archive.stream, res).catch(() => res.destroy());
  });
}
