from __future__ import annotations

from fastapi import FastAPI, HTTPException

from fastapi_offload import Offload, OffloadTasks, TaskState, cpu_bound

offload = Offload(keep_result=True)  # or OFFLOAD_KEEP_RESULT=1
app = FastAPI(lifespan=offload.lifespan)
# GET /tasks/{task_id}, with "result". public=True: whoever holds a task's id reads its
# result; to serve each result to the user who started the task only, see "Only the owner".
app.include_router(offload.status_router(public=True))


@cpu_bound
def word_count(text: str) -> dict[str, int]:
    words = text.split()
    return {"words": len(words), "distinct": len(set(words))}  # JSON: kept


@app.post("/counts", status_code=202)
async def start_count(text: str, tasks: OffloadTasks) -> dict[str, str]:
    return {"task_id": tasks.add_task(word_count, text).id}


@app.get("/counts/{task_id}")
async def count_result(task_id: str) -> dict[str, int]:
    info = await offload.status(task_id)
    if info.state is TaskState.UNKNOWN:
        raise HTTPException(404, f"no count {task_id}")
    if info.state is not TaskState.SUCCEEDED:
        raise HTTPException(409, f"count {task_id} is {info.state.value}: {info.error}")
    counted: dict[str, int] = info.result  # what word_count returned, as JSON data
    return counted
